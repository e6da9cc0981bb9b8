"""A real client: a separate environment with TensorFlow alone (.venv/tf-client, built by
`make install`) loads the exported SavedModel and scores the test fixtures like the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.serving.exported import SAVED_MODEL_DIR
from tasks.serving.predict import Predictor
from tests.imdb_fixtures import Exported

CLIENT = Path(sys.executable).parent.parent / "tf-client" / "bin" / "python"
SCRIPT = Path(__file__).resolve().parents[2] / "saved_model_client.py"


def test_a_tensorflow_only_environment_loads_and_scores_the_saved_model(
    exported: Exported, tmp_path: Path
) -> None:
    assert CLIENT.exists(), f"no TensorFlow-only client at {CLIENT}: run `make install`"
    # Given the small archive's test reviews and odd inputs, and the project's own scores
    texts = pq.read_table(exported.data.split_path("test"), columns=["text"])["text"].to_pylist()
    texts += ["", "<br />", "?!", "İSTANBUL ǅ Ⱟ"]
    want = Predictor(exported.model_dir).predict(texts)
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    script = tmp_path / SCRIPT.name  # run from outside the checkout
    shutil.copyfile(SCRIPT, script)

    # When the client, in its own environment and outside the checkout, scores them
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(CLIENT), str(script), str(exported.model_dir / SAVED_MODEL_DIR), "texts.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    # Then it could not import this project, and it gives the project's probabilities
    assert out["project_importable"] is False
    assert np.max(np.abs(np.array(out["probability"]) - want)) <= 1e-5
    assert out["label"] == [int(p >= 0.5) for p in out["probability"]]
