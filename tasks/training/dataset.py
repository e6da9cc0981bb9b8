"""tf.data input pipelines from the tokenised parquet splits.

Batches group reviews of similar length (an LSTM's cost grows with padded length). They are
padded at the end when the model masks padding (`pad_end`; the only layout the cuDNN LSTM
accepts with a mask), else at the front, so that an unmasked LSTM's last step sees the end of
the review. The batch plan of epoch `e` depends only on (seed, e): a resumed run sees exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_BUCKET_BATCHES = 50  # batches per length-sorting window: similar lengths, still random
_PAD_MULTIPLE = 32  # round padded lengths up so few distinct shapes are traced
EVAL_BATCH = 256  # rows per batch wherever a model only predicts (validation, test, predict)


@dataclass(frozen=True)
class Split:
    """One split as flat token ids + row offsets (sequences already truncated)."""

    values: np.ndarray  # int32, all sequences concatenated
    offsets: np.ndarray  # int64, len = rows + 1
    labels: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def load_split(
    path: Path, sequence_length: int, max_reviews: int | None = None, seed: int = 0
) -> Split:
    """Read a parquet split keeping each review's last `sequence_length` tokens."""
    table = pq.read_table(path, columns=["token_ids", "label"])
    if len(table) == 0:
        raise ValueError(f"{path} has no rows")
    if max_reviews is not None and max_reviews < len(table):
        keep = np.sort(np.random.default_rng(seed).permutation(len(table))[:max_reviews])
        table = table.take(keep)
    labels = np.asarray(table.column("label").combine_chunks(), dtype=np.float32)
    return keep_last(table.column("token_ids").combine_chunks(), labels, sequence_length)


def keep_last(tokens: pa.ListArray, labels: np.ndarray, sequence_length: int) -> Split:
    """A Split of each token list's last `sequence_length` ids.

    The end of a review usually carries the verdict, so truncation drops the start.
    """
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    ends = offsets[1:]
    starts = np.maximum(offsets[:-1], ends - sequence_length)
    flat = np.asarray(pc.list_flatten(tokens), dtype=np.int32)
    lengths = ends - starts
    new_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    index = [np.arange(s, e) for s, e in zip(starts, ends, strict=True)]
    index = np.concatenate(index) - offsets[0] if index else np.zeros(0, np.int64)
    return Split(flat[index], new_offsets, labels)


def epoch_plan(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, shuffle: bool = True
) -> list[np.ndarray]:
    """Row indices of each batch of `epoch`: shuffled, then length-sorted within windows."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    window = batch_size * _BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch of `epoch_plan` (constant across epochs)."""
    window = batch_size * _BUCKET_BATCHES
    full, rest = divmod(n, window)
    return full * _BUCKET_BATCHES + -(-rest // batch_size)


def make_dataset(
    split: Split,
    batch_size: int,
    seed: int,
    first_epoch: int,
    last_epoch: int,
    shuffle: bool = True,
    pad_end: bool = False,
):
    """tf.data.Dataset of (x, y) batches for epochs [first_epoch, last_epoch), in order."""
    import tensorflow as tf

    plans = [
        b
        for e in range(first_epoch, last_epoch)
        for b in epoch_plan(split.lengths, batch_size, seed, e, shuffle)
    ]
    batch_rows = tf.ragged.constant([p.tolist() for p in plans], dtype=tf.int64)
    if pad_end:
        seqs = tf.RaggedTensor.from_row_splits(split.values, split.offsets)
    else:  # stored reversed: end-padding a reversed row and reversing back pads it at the front
        seqs = tf.RaggedTensor.from_row_splits(
            split.values[::-1].copy(), split.offsets[-1] - split.offsets[::-1]
        )
    labels = tf.constant(split.labels)
    n = len(split)

    def gather(rows: tf.Tensor):
        rows = tf.cast(rows, tf.int64)
        dense = tf.gather(seqs, rows if pad_end else n - 1 - rows).to_tensor(default_value=0)
        width = tf.shape(dense)[1]
        padded = tf.maximum((width + _PAD_MULTIPLE - 1) // _PAD_MULTIPLE, 1) * _PAD_MULTIPLE
        dense = tf.pad(dense, [[0, 0], [0, padded - width]])
        return dense if pad_end else tf.reverse(dense, axis=[1]), tf.gather(labels, rows)

    ds = tf.data.Dataset.from_tensor_slices(batch_rows)
    ds = ds.map(gather, num_parallel_calls=1, deterministic=True).prefetch(2)
    # No autotuning: one map thread and two batches ahead are fixed, so the autotuner has
    # nothing to tune, yet its optimisation thread sleeps up to 60 s between rounds, and an
    # iterator's destruction waited for it: 35-45 s between the last epoch and the end of
    # `fit` in some full-size runs (the main thread in RootDataset::Iterator::~Iterator,
    # waiting on that thread, every thread asleep). Without autotuning it is never started.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def make_eval_dataset(split: Split, batch_size: int = EVAL_BATCH, pad_end: bool = False):
    """Unshuffled (x, y) batches covering each row once, for validation and evaluation."""
    return make_dataset(split, batch_size, 0, 0, 1, shuffle=False, pad_end=pad_end)


def eval_order(split: Split, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Row order in which `make_eval_dataset` yields the rows."""
    return np.concatenate(epoch_plan(split.lengths, batch_size, 0, 0, shuffle=False))
