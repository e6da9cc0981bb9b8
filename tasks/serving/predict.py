"""Score raw review text with an exported model and its saved tokenizer."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.data import text
from tasks.data.review_files import LENIENT, read_reviews
from tasks.evaluation.evaluate import predict_split
from tasks.serving.exported import ExportedModel
from tasks.serving.saved_model import SavedModelScorer, is_saved_model
from tasks.training.dataset import Split, keep_last

BATCH = 512  # texts scored at a time by `predict` (its progress bar moves per batch)


class Predictor:
    """An exported model folder (or a .keras/.h5 file inside one, or its saved_model/ folder),
    ready to score text."""

    def __init__(self, model_path: Path) -> None:
        if not model_path.exists():
            raise FileNotFoundError(
                f"{model_path} not found: --model must be an exported model folder "
                "(artifacts/models/<run_id>), a model file inside one or its saved_model/"
            )
        self.saved_model = None
        if model_path.is_dir() and is_saved_model(model_path):
            self.saved_model = SavedModelScorer(model_path)  # the tokenizer is in its graph
            self.path = model_path
            return
        export = ExportedModel(model_path if model_path.is_dir() else model_path.parent)
        file = model_path if model_path.is_file() else export.model_file
        for needed in [p for p in (file,) if not p.exists()] + export.missing():
            raise FileNotFoundError(
                f"{needed} not found: --model must be an exported model folder "
                "(artifacts/models/<run_id>), a model file inside one or its saved_model/"
            )
        self.settings = export.tokenizer_settings()
        if self.settings["tokenizer_version"] != text.TOKENIZER_VERSION:
            raise ValueError(
                f"{export.path} was tokenised with tokenizer version "
                f"{self.settings['tokenizer_version']}, this code has {text.TOKENIZER_VERSION}"
            )
        # Exports before masking was added say "front, with id 0".
        self.pad_end = self.settings["padding"] == "end"
        self.vocabulary = export.vocabulary()
        self.model = load_inference_model(file)
        self.path = file

    def encode(self, texts: list[str]) -> Split:
        """Token ids of each text, truncated like the training data (labels are dummies)."""
        ids = text.encode(text.tokenize(pa.array(texts, pa.string())), self.vocabulary)
        labels = np.zeros(len(texts), dtype=np.float32)
        return keep_last(ids, labels, self.settings["sequence_length"])

    def predict(self, texts: list[str]) -> np.ndarray:
        """Probability that each text is positive (padded and batched exactly as in evaluation)."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        if self.saved_model is not None:
            return self.saved_model.predict(texts)
        return predict_split(self.model, self.encode(texts), self.pad_end)[1]


# Imported by keras only for parts of its API the pipeline never uses (its scikit-learn
# wrappers, its image-gallery plot): about 1.3 s of CPU at start-up, of `predict`'s 7 s.
_NOT_FOR_KERAS = ("sklearn", "matplotlib")


def load_inference_model(file: Path) -> Any:
    """The model in `file` (compile=False), with the pipeline's layers registered.

    The first import of keras in a process is done with scikit-learn and matplotlib hidden:
    keras then leaves its scikit-learn wrappers and gallery plot unusable in this process (it
    checks once, at import), and both libraries import normally afterwards. Where keras is
    already imported this changes nothing.
    """
    first = "keras" not in sys.modules
    blocked = [name for name in _NOT_FOR_KERAS if first and name not in sys.modules]
    collecting = gc.isenabled()
    try:
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` fails
        # Importing TensorFlow leaves about 300,000 objects for the cyclic collector to track,
        # and it would walk the growing heap again and again meanwhile: 0.5 s of a one-review
        # `predict`. Nothing it imports is garbage, so the collector is off until it is done,
        # and what is there by then is frozen out of every later collection.
        gc.disable()
        import keras  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
        if first:
            gc.freeze()
        if collecting:
            gc.enable()
    from tasks.training.layers import load_model

    return load_model(file, compile=False)


def read_texts(path: Path) -> list[str]:
    """Every review of a file, in order (`review_files.LENIENT`: a .txt keeps its blank lines,
    so that output line n is input line n)."""
    return read_reviews(path, LENIENT).column("text").to_pylist()
