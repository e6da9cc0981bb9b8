"""A client of an exported SavedModel that has TensorFlow and nothing of this project: run by
.venv/tf-client/bin/python (TensorFlow alone). Keras is blocked too, so that loading needs
TensorFlow's own ops only.

Usage: python saved_model_client.py SAVED_MODEL_DIR TEXTS.json  -> one JSON line on stdout:
{"probability": [...], "label": [...], "tensorflow": version, "project_importable": bool}
"""

import importlib.util
import json
import sys

sys.modules["keras"] = None  # `import keras` fails: the SavedModel must not need it

import tensorflow as tf  # noqa: E402


def main() -> None:
    folder, texts_file = sys.argv[1], sys.argv[2]
    with open(texts_file, encoding="utf-8") as fh:
        texts = json.load(fh)
    serve = tf.saved_model.load(folder).signatures["serving_default"]
    out = serve(text=tf.constant(texts, tf.string))
    print(
        json.dumps(
            {
                "probability": out["probability"].numpy().tolist(),
                "label": out["label"].numpy().tolist(),
                "tensorflow": tf.__version__,
                "project_importable": importlib.util.find_spec("tasks") is not None,
            }
        )
    )


if __name__ == "__main__":
    main()
