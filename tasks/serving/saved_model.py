"""The export for any TensorFlow stack: a SavedModel that takes raw review strings.

`saved_model/` in each export folder has one serving signature, `serving_default`: input
`text`, a batch of review strings (`tf.string`, shape `[None]`); outputs `probability`
(`float32 [None]`, that the review is positive) and `label` (`int64 [None]`, 1 at >= 0.5). It
loads with `tf.saved_model.load` and nothing of this project: no custom objects, no pickles.

Inside the graph, with TensorFlow ops only, the text goes through the rules of
`tasks.data.text` exactly, whatever Unicode version the serving TensorFlow's ICU and RE2 have:
- invalid UTF-8 is replaced by U+FFFD (a separator, as in the project);
- lower-casing is Arrow's (`utf8_lower`), as a table of code points (1,508 of them), not
  `tf.strings.lower`: that one maps U+0130 to two code points and leaves the letters of newer
  Unicode versions unchanged (116 code points differ);
- whether a code point is a letter or digit is Python's `unicodedata`, as the project's
  tokenizer asks it, as sorted range bounds searched in the graph; every other character but
  `'`, `!`, `?`, `<` and `>` becomes a space. The RE2 rules that follow then need only ASCII
  classes (RE2's `\\p{L}` differs from Python's on 4,388 code points);
- then the vocabulary (a lookup table, OOV id 1), the last `sequence_length` ids, end padding
  (0, masked by the model) and the Keras model.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

SIGNATURE = "serving_default"
INPUT = "text"

# The rules of tasks.data.text once every non-word character but these is a space.
_KEPT = "'!?<>"
_GRAPH_REWRITES: tuple[tuple[str, str], ...] = (
    (r"<[^>]*>", " "),
    (r"([!?])", r" \1 "),
    (r"[ <>]+", " "),  # [^\p{L}\p{N}'!?]+: nothing else is left that is not a word character
    (r"(^|[ '!?])'+", r"\1"),  # (^|[^\p{L}\p{N}])'+
    (r"'+([ '!?]|$)", r"\1"),  # '+([^\p{L}\p{N}]|$)
)


@functools.cache
def lower_map() -> tuple[np.ndarray, np.ndarray]:
    """(code point, its lower case) for every code point that Arrow's `utf8_lower` changes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    points = np.array(
        [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF], dtype=np.int64
    )
    lowered = pc.utf8_lower(pa.array([chr(c) for c in points], pa.string())).to_pylist()
    src, dst = [], []
    for c, low in zip(points.tolist(), lowered, strict=True):
        if low != chr(c):
            if len(low) != 1:  # Arrow's mapping is one code point to one: the table relies on it
                raise ValueError(f"utf8_lower maps U+{c:04X} to {len(low)} code points")
            src.append(c)
            dst.append(ord(low))
    return np.array(src, np.int32), np.array(dst, np.int32)


@functools.cache
def word_bounds() -> np.ndarray:
    """Sorted code points at which "letter or digit" (Unicode category L* or N*) switches on
    or off: a code point is a word character when an odd number of bounds is <= it."""
    word = np.array(
        [unicodedata.category(chr(c))[0] in "LN" for c in range(sys.maxunicode + 1)], bool
    )
    flips = np.flatnonzero(np.diff(np.concatenate([[False], word]).astype(np.int8)))
    return flips.astype(np.int32)


class ServingGraph:
    """The tables and the serving function of one exported model (see the module docstring)."""

    def __init__(self, model: Any, vocabulary: list[str], sequence_length: int) -> None:
        import tensorflow as tf

        src, dst = lower_map()
        self.lower = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(src), tf.constant(dst)), -1
        )
        words = vocabulary[2:]
        self.vocabulary = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(words, tf.string), tf.range(2, len(words) + 2, dtype=tf.int64)
            ),
            1,  # OOV_ID
        )
        self.bounds = word_bounds()
        self.kept = np.array([ord(c) for c in _KEPT], np.int32)
        self.model = model
        self.sequence_length = sequence_length
        self.id_dtype = model.inputs[0].dtype if getattr(model, "inputs", None) else "int32"

    def tokens(self, texts: Any) -> Any:
        """The token strings of each text (a ragged [batch, None] tf.string)."""
        import tensorflow as tf

        valid = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        points = tf.strings.unicode_decode(valid, "UTF-8")
        flat = points.flat_values
        mapped = self.lower.lookup(flat)
        flat = tf.where(mapped >= 0, mapped, flat)
        word = tf.math.floormod(tf.searchsorted(self.bounds, flat, side="right"), 2) == 1
        kept = tf.reduce_any(tf.equal(flat[:, None], self.kept[None, :]), axis=1)
        flat = tf.where(tf.logical_or(word, kept), flat, 32)
        s = tf.strings.unicode_encode(points.with_flat_values(flat), "UTF-8")
        for pattern, rewrite in _GRAPH_REWRITES:
            s = tf.strings.regex_replace(s, pattern, rewrite)
        parts = tf.strings.split(s, sep=" ")
        return tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0)

    def ids(self, texts: Any) -> Any:
        """Token ids, the last `sequence_length` of each text, end-padded with 0 (at least one
        column, for a batch of reviews without words)."""
        import tensorflow as tf

        tokens = self.tokens(texts)
        ids = tokens.with_flat_values(self.vocabulary.lookup(tokens.flat_values))
        ids = ids[:, -self.sequence_length :]
        dense = ids.to_tensor(0)
        width = tf.maximum(0, 1 - tf.shape(dense)[1])
        return tf.cast(tf.pad(dense, [[0, 0], [0, width]]), self.id_dtype)

    def serve(self, text: Any) -> dict[str, Any]:
        import tensorflow as tf

        probability = tf.reshape(self.model(self.ids(text), training=False), [-1])
        return {
            "probability": tf.cast(probability, tf.float32),
            "label": tf.cast(probability >= 0.5, tf.int64),
        }


def is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


class SavedModelScorer:
    """A SavedModel folder loaded with `tf.saved_model.load`, as a client would: the positive
    probability of raw texts, sent in batches of similar length (less padding to run)."""

    def __init__(self, path: Path, batch: int = 256) -> None:
        import tensorflow as tf

        self.path = path
        self.batch = batch
        self.signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def predict(self, texts: list[str]) -> np.ndarray:
        import tensorflow as tf

        out = np.zeros(len(texts), dtype=np.float64)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch):
            rows = order[start : start + self.batch]
            batch = tf.constant([texts[i] for i in rows], tf.string)
            out[rows] = self.signature(**{INPUT: batch})["probability"].numpy()
        return out


def write_saved_model(model: Any, vocabulary: list[str], sequence_length: int, dest: Path) -> None:
    """Write the SavedModel of `model` (a Keras model that takes end-padded, masked token ids)
    to `dest`, which must not exist (the export writes it inside its temporary folder)."""
    import keras
    import tensorflow as tf

    graph = ServingGraph(model, vocabulary, sequence_length)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(graph.lower)
    archive.track(graph.vocabulary)
    archive.add_endpoint(
        SIGNATURE, graph.serve, input_signature=[tf.TensorSpec([None], tf.string, name=INPUT)]
    )
    archive.write_out(str(dest), verbose=False)


def export_for(model_dir: Path, dest: Path) -> Path:
    """The SavedModel of an exported model folder written to `dest` (for exports made before
    the SavedModel was part of the export); `dest`."""
    from tasks.serving.exported import ExportedModel
    from tasks.serving.predict import load_inference_model

    export = ExportedModel(model_dir)
    settings = export.tokenizer_settings()
    if settings["padding"] != "end":
        raise ValueError(f"{model_dir} pads in front without a mask: no SavedModel for it")
    model = load_inference_model(export.model_file)
    write_saved_model(model, export.vocabulary(), settings["sequence_length"], dest)
    return dest
