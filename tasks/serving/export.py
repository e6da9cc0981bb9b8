"""export_model: the selected model as .h5 and .keras, with its tokenizer and a model card,
and as a SavedModel that takes raw text (`saved_model.py`: any TensorFlow stack can serve it).

Loading the exported files (Keras 3.15), after `import tasks.training.layers` (the model's own
layers, registered by name; `tasks.training.layers.load_model` imports and loads in one call):
- inference: `keras.models.load_model("model.keras", compile=False)` (or the .h5 likewise);
- further training with the saved optimizer state: `keras.models.load_model("model.keras")`;
- further training from the .h5: `load_model("sentiment-lstm.h5", compile=False)` and compile
  again (`tasks.training.model.compile_model`): a compiled model loaded from .h5 has an
  optimizer that cannot train (`Unknown variable` on fit); its optimizer state is not usable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.core import environment
from tasks.core.atomic import atomic_dir
from tasks.data import text
from tasks.data.processed import ProcessedData
from tasks.serving.exported import (
    CARD_FILE,
    CARD_JSON,
    H5_FILE,
    KERAS_FILE,
    SAVED_MODEL_DIR,
    TOKENIZER_FILE,
    VOCAB_FILE,
)
from tasks.serving.saved_model import INPUT, SIGNATURE, write_saved_model


def tokenizer_settings(config: PipelineConfig) -> dict[str, Any]:
    return {
        "tokenizer_version": text.TOKENIZER_VERSION,
        "vocab_size": config.vocab_size,
        "sequence_length": config.sequence_length,
        "truncation": "keep the last sequence_length tokens",
        # A model that masks its padding expects it at the end of the row (the cuDNN layout).
        "padding": "end" if config.mask_padding else "front",
        "pad_id": text.PAD_ID,
        "oov_id": text.OOV_ID,
    }


def export(
    checkpoint_model: Path,
    models_dir: Path,
    run_id: str,
    config: PipelineConfig,
    data: ProcessedData,
    metrics: dict[str, Any],
    selected_epoch: int | None,
    warm_started_from: str | None = None,
) -> Path:
    """Write models_dir/<run_id>/ atomically (a re-export replaces the folder whole);
    `warm_started_from` names the model whose weights training started from, if any."""
    from tasks.training.layers import load_model
    from tasks.training.model import compile_model, serving_model

    dest = models_dir / run_id
    with atomic_dir(dest) as tmp:
        trained = load_model(checkpoint_model)
        model = serving_model(trained, config)
        if model is trained:  # one branch: the checkpoint's file is the model, as saved
            shutil.copyfile(checkpoint_model, tmp / KERAS_FILE)
        else:  # the two branches averaged, compiled with the trained optimizer and its state
            compile_model(model, config.learning_rate, optimizer=trained.optimizer)
            model.save(tmp / KERAS_FILE)
        model.save(tmp / H5_FILE)
        shutil.copyfile(data.vocabulary_path, tmp / VOCAB_FILE)
        (tmp / TOKENIZER_FILE).write_text(json.dumps(tokenizer_settings(config), indent=2))
        if config.mask_padding:  # front padding without a mask is not batch-independent
            write_saved_model(
                model, data.vocabulary(), config.sequence_length, tmp / SAVED_MODEL_DIR
            )
        card = {
            "run_id": run_id,
            "selected_epoch": selected_epoch,
            "selected_on": config.monitor,
            "warm_started_from": warm_started_from,
            "data_fingerprint": data.fingerprint,
            "data_incoming": list(data.incoming),
            "config_digest": config.digest(),
            "config": config.model_dump(mode="json"),
            "test_metrics": metrics,
            "environment": environment.describe(),
            "saved_model": (
                {
                    "path": SAVED_MODEL_DIR,
                    "signature": SIGNATURE,
                    "input": {"name": INPUT, "dtype": "string", "shape": [None]},
                    "outputs": {"probability": "float32 [None]", "label": "int64 [None]"},
                    "tf_serving_request": {"instances": ["A wonderful film."]},
                }
                if config.mask_padding
                else None
            ),
        }
        (tmp / CARD_JSON).write_text(json.dumps(card, indent=2))
        (tmp / CARD_FILE).write_text(model_card(card))
    return dest


def _environment(env: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    return (
        f"Python {env.get('python')} on {env.get('platform')}; {packages}; lock sha256 "
        f"`{env.get('lock_sha256')}`; code commit `{env.get('git_commit')}`."
    )


def _start(card: dict[str, Any]) -> str:
    source = card.get("warm_started_from")
    if source is None:
        return "Trained from scratch."
    return f"Warm-started from the weights of `{source}` (the champion of its night)."


def _saved_model(card: dict[str, Any]) -> str:
    if not card["config"].get("mask_padding", True):
        return ""
    return f"""- `{SAVED_MODEL_DIR}/`: TensorFlow SavedModel taking raw review text, the tokenizer
  inside the graph (TensorFlow ops only); it needs `tensorflow` and nothing of this project.
  Signature `{SIGNATURE}`: input `{INPUT}` (`tf.string`, shape `[None]`), outputs
  `probability` (`float32`) and `label` (`int64`, 1 = positive at >= 0.5). In Python:

  ```python
  import tensorflow as tf
  serve = tf.saved_model.load("{SAVED_MODEL_DIR}").signatures["{SIGNATURE}"]
  serve(text=tf.constant(["A wonderful film."]))["probability"].numpy()
  ```

  TensorFlow Serving (the folder as version `1` of model `imdb`): `POST
  /v1/models/imdb:predict` with the body `{{"instances": ["A wonderful film."]}}`; each
  prediction is `{{"probability": ..., "label": ...}}`.
"""


def model_card(card: dict[str, Any]) -> str:
    m = card["test_metrics"]
    cfg = card["config"]
    rows = "\n".join(f"| {k} | `{v}` |" for k, v in cfg.items() if k not in ("sha256",))
    low, high = m.get("accuracy_ci95", (float("nan"), float("nan")))
    return f"""# IMDB sentiment LSTM — run `{card["run_id"]}`

Binary sentiment classifier (1 = positive) for English movie reviews, trained on the IMDB
Large Movie Review Dataset (Maas et al., 2011). Selected at epoch {card["selected_epoch"]} on
validation `{card["selected_on"]}`; the test split was used once, for the figures below.

## Test metrics ({m["examples"]:,} reviews)
| metric | value |
|---|---|
| accuracy | {m["accuracy"]:.4f} (95 % interval {low:.4f}–{high:.4f}) |
| precision | {m["precision"]:.4f} |
| recall | {m["recall"]:.4f} |
| F1 | {m["f1"]:.4f} |
| ROC-AUC | {m["roc_auc"]:.4f} |
| loss | {m["loss"]:.4f} |

## Files
The model holds layers of this project (`tasks/training/layers.py`: n-gram ids, naive-Bayes
logit, masked max pooling). Import that module before `keras.models.load_model` (it registers
them by name), or call `tasks.training.layers.load_model`, which does both.

- `{KERAS_FILE}`: full model with optimizer state. Inference:
  `keras.models.load_model("{KERAS_FILE}", compile=False)`; further training:
  `keras.models.load_model("{KERAS_FILE}")` then `fit`.
- `{H5_FILE}`: HDF5 (legacy) copy. Inference: `keras.models.load_model("{H5_FILE}",
  compile=False)`. Further training: load with `compile=False` and compile again (a compiled
  model loaded from .h5 in Keras 3.15 cannot train: `Unknown variable` on `fit`).
- `{VOCAB_FILE}`, `{TOKENIZER_FILE}`: the tokenizer (line i of the vocabulary is id i);
  `imdb-pipeline predict --model <this folder> "some review"` applies it.
{_saved_model(card)}
## Data
Tokenised data fingerprint `{card["data_fingerprint"]}` (the archive plus
{len(card.get("data_incoming", ()))} accepted incoming files); config digest
`{card.get("config_digest")}`. {_start(card)}

## Environment
{_environment(card.get("environment") or {})}

## Configuration
| field | value |
|---|---|
{rows}
"""


def load_for_training(path: Path, learning_rate: float) -> Any:
    """A trainable model from an exported .keras (optimizer kept) or .h5 (fresh optimizer)."""
    from tasks.training.layers import load_model
    from tasks.training.model import compile_model

    if path.suffix == ".h5":
        model = load_model(path, compile=False)
        compile_model(model, learning_rate)
        return model
    return load_model(path)
