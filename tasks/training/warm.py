"""Warm start: a nightly challenger that begins where the champion ended.

A night that adds a small share of text to the archive (the rule that carries the word vectors
over, `word_vectors_reuse_share`) and whose settings are the champion's trains its challenger
from the champion's weights for `warm_start_epochs` epochs, instead of from scratch for
`epochs`. The new data version has a vocabulary and an n-gram table of its own, so weights
move by meaning, not by position:
- embedding rows by word (a word new to the vocabulary keeps its word-vector start);
- n-gram weights by n-gram (the words of each; an n-gram new to the table starts at 0, as in
  a fresh model), while the naive-Bayes ratios are those counted on the new training split;
- every other weight (LSTM, heads) as it is.
The optimizer starts afresh and its schedule spans the warm epochs. The challenger is then
judged against the champion exactly as a challenger trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WARM_RECORD = "warm_start"  # the run.json key that names the model a run starts from


@dataclass(frozen=True)
class WarmStart:
    """The export a run's training starts from (`model`: its .keras file, `vocabulary`: its
    vocab.txt) and the epochs it trains for."""

    model: Path
    vocabulary: Path
    epochs: int

    def record(self) -> dict[str, Any]:
        return {"model": str(self.model), "vocabulary": str(self.vocabulary), "epochs": self.epochs}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> WarmStart | None:
        if not record:
            return None
        return cls(Path(record["model"]), Path(record["vocabulary"]), int(record["epochs"]))

    def check(self) -> None:
        """Refuse a start point that is gone (e.g. a resume after the export was deleted)."""
        for path in (self.model, self.vocabulary):
            if not path.is_file():
                raise FileNotFoundError(f"warm start: {path} not found (the champion's export)")


def id_map(old_vocabulary: list[str], new_vocabulary: list[str]) -> np.ndarray:
    """For each old id, the new id of the same word, or -1 (ids 0 and 1, padding and the
    out-of-vocabulary token, map to themselves)."""
    new = {word: i for i, word in enumerate(new_vocabulary)}
    mapped = np.array([new.get(word, -1) for word in old_vocabulary], dtype=np.int64)
    mapped[: min(2, len(mapped))] = np.arange(min(2, len(mapped)))
    return mapped


def remap_ngram_keys(keys: np.ndarray, ids: np.ndarray, vocab_size: int, order: int) -> np.ndarray:
    """`layers.ngram_keys` keys of the old vocabulary as keys of the new one (`ids` from
    `id_map`), -1 where a word of the n-gram is not in the new vocabulary. Key 0 stays 0."""
    keys = np.asarray(keys, dtype=np.int64)
    out = np.full(len(keys), -1, dtype=np.int64)
    out[keys == 0] = 0
    offset, width = 0, vocab_size  # keys of order k: [offset, offset + vocab_size**k)
    for k in range(1, order + 1):
        inside = (keys >= max(offset, 1)) & (keys < offset + width)
        rest = keys[inside] - offset
        new_key = np.zeros(len(rest), dtype=np.int64)
        known = np.ones(len(rest), dtype=bool)
        for position in range(k):  # most significant digit first
            digit = (rest // vocab_size ** (k - 1 - position)) % vocab_size
            new_id = ids[digit]
            known &= new_id >= 2  # padding, out-of-vocabulary and gone words end an n-gram
            new_key = new_key * vocab_size + np.maximum(new_id, 0)
        out[np.flatnonzero(inside)] = np.where(known, new_key + offset, -1)
        offset += width
        width *= vocab_size
    return out


def transfer_weights(
    model: Any,
    champion: Any,
    old_vocabulary: list[str],
    new_vocabulary: list[str],
    vocab_size: int,
    order: int,
) -> dict[str, int]:
    """Copy `champion`'s weights into `model` (built, its n-gram table and ratios set from the
    new data) as the module docstring says. Returns how many words and n-grams carried over."""
    from tasks.training.model import EMBEDDING, NGRAM_IDS, NGRAM_LOGIT  # keras: only when used

    ids = id_map(old_vocabulary, new_vocabulary)
    counts = {"words": 0, "words_new": 0, "ngrams": 0, "ngrams_new": 0}
    for layer in model.layers:
        if not layer.weights or layer.name == NGRAM_IDS:
            continue  # the input, and the table counted on the new data
        old = champion.get_layer(layer.name)
        if layer.name == EMBEDDING:
            rows = np.asarray(layer.embeddings.numpy())
            source = np.asarray(old.embeddings.numpy())
            keep = ids >= 0
            rows[ids[keep]] = source[np.flatnonzero(keep)]
            layer.embeddings.assign(rows)
            counts["words"] = int(keep[2:].sum())
            counts["words_new"] = len(new_vocabulary) - 2 - counts["words"]
        elif layer.name == NGRAM_LOGIT:
            new_table = np.asarray(model.get_layer(NGRAM_IDS).table.numpy())
            old_table = np.asarray(champion.get_layer(NGRAM_IDS).table.numpy())
            keys = remap_ngram_keys(old_table, ids, vocab_size, order)
            at = np.clip(np.searchsorted(new_table, keys), 0, len(new_table) - 1)
            found = (keys >= 0) & (new_table[at] == keys)
            w = np.zeros(len(new_table), dtype=np.float32)
            w[at[found]] = np.asarray(old.w.numpy())[found]
            layer.w.assign(w)
            counts["ngrams"] = int(found[1:].sum())
            counts["ngrams_new"] = len(new_table) - 1 - counts["ngrams"]
        else:
            for weight, value in zip(layer.trainable_weights, old.trainable_weights, strict=True):
                weight.assign(value)
    return counts
