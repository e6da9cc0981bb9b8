"""Tests of the tf.data input pipeline: truncation, batch plans, padding and resumability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.training import dataset
from tests.imdb_fixtures import tokenize_small


def _write_split(path: Path, sequences: list[list[int]], labels: list[int]) -> Path:
    """A parquet split with just the columns `load_split` reads."""
    table = pa.table(
        {
            "token_ids": pa.array(sequences, pa.list_(pa.int32())),
            "label": pa.array(labels, pa.int32()),
        }
    )
    pq.write_table(table, path)
    return path


def _varied_sequences(n: int, seed: int = 0) -> list[list[int]]:
    """`n` sequences of varied lengths (1..90) of non-zero ids, each row recognisable."""
    rng = np.random.default_rng(seed)
    return [[int(t) for t in rng.integers(1, 500, size=int(rng.integers(1, 91)))] for _ in range(n)]


@pytest.fixture(scope="module")
def varied_split_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 rows of varied lengths; the label of row i is i (to identify rows in batches)."""
    folder = tmp_path_factory.mktemp("varied")
    return _write_split(folder / "train.parquet", _varied_sequences(150), list(range(150)))


@pytest.fixture(scope="module")
def tokenized(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    return tokenize_small(small_archive, tmp_path_factory.mktemp("processed"))


def _rows(split: dataset.Split) -> list[list[int]]:
    return [
        split.values[split.offsets[i] : split.offsets[i + 1]].tolist() for i in range(len(split))
    ]


def test_load_split_keeps_the_last_sequence_length_tokens(tmp_path: Path) -> None:
    # Given reviews shorter than, equal to and longer than the sequence length
    sequences = [[1, 2, 3], [4, 5, 6, 7, 8], list(range(10, 30)), [9]]
    path = _write_split(tmp_path / "s.parquet", sequences, [0, 1, 1, 0])

    # When the split is loaded with sequence_length 5
    split = dataset.load_split(path, sequence_length=5)

    # Then each row holds its review's last 5 tokens (short reviews whole), labels as float
    assert _rows(split) == [[1, 2, 3], [4, 5, 6, 7, 8], [25, 26, 27, 28, 29], [9]]
    assert split.lengths.tolist() == [3, 5, 5, 1]
    assert split.labels.dtype == np.float32
    assert split.labels.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert split.values.dtype == np.int32


def test_load_split_truncates_tokenised_reviews_from_the_start(tokenized) -> None:
    # Given a tokenised split of ~40-token reviews
    path = tokenized.split_path("train")
    full = pq.read_table(path).column("token_ids").to_pylist()

    # When loaded with a sequence length shorter than the reviews
    split = dataset.load_split(path, sequence_length=12)

    # Then every row is the tail of its review
    assert _rows(split) == [row[-12:] for row in full]


def test_load_split_rejects_an_empty_split(tmp_path: Path) -> None:
    # Given a split without rows
    path = _write_split(tmp_path / "empty.parquet", [], [])

    # When / then loading it fails, naming the file
    with pytest.raises(ValueError, match="no rows"):
        dataset.load_split(path, sequence_length=5)


def test_max_reviews_caps_rows_deterministically(varied_split_path: Path) -> None:
    # Given a split of 150 rows (label == row number)
    # When it is loaded twice with a cap of 40, and once with another seed
    a = dataset.load_split(varied_split_path, 100, max_reviews=40, seed=7)
    b = dataset.load_split(varied_split_path, 100, max_reviews=40, seed=7)
    c = dataset.load_split(varied_split_path, 100, max_reviews=40, seed=8)
    uncapped = dataset.load_split(varied_split_path, 100, max_reviews=1000, seed=7)

    # Then the capped loads have 40 distinct rows, in file order, identical for one seed
    assert len(a) == 40
    assert a.labels.tolist() == b.labels.tolist()
    assert np.array_equal(a.values, b.values)
    assert sorted(a.labels.tolist()) == a.labels.tolist()
    assert len(set(a.labels.tolist())) == 40
    assert a.labels.tolist() != c.labels.tolist()
    # And each kept row is the same sequence as in the uncapped load
    full_rows = _rows(uncapped)
    for row, label in zip(_rows(a), a.labels, strict=True):
        assert row == full_rows[int(label)]
    # And a cap above the row count keeps everything
    assert len(uncapped) == 150


@pytest.mark.parametrize(("n", "batch_size"), [(1, 4), (150, 16), (401, 8), (1000, 7), (37, 64)])
def test_epoch_plan_covers_every_row_exactly_once(n: int, batch_size: int) -> None:
    # Given rows of varied lengths
    lengths = np.random.default_rng(1).integers(1, 400, size=n)

    for epoch in range(3):
        # When the plan of an epoch is made
        plan = dataset.epoch_plan(lengths, batch_size, seed=3, epoch=epoch)

        # Then every row appears exactly once, in batches no larger than batch_size
        rows = np.concatenate(plan)
        assert sorted(rows.tolist()) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in plan)


def test_epoch_plan_depends_only_on_seed_and_epoch() -> None:
    # Given rows of varied lengths
    lengths = np.random.default_rng(2).integers(1, 400, size=500)

    def plan(seed: int, epoch: int) -> list[list[int]]:
        return [b.tolist() for b in dataset.epoch_plan(lengths, 8, seed, epoch)]

    # When plans are made (in an arbitrary order, e.g. as a resumed run would)
    later_first = plan(5, 3)
    first = plan(5, 0)

    # Then the same (seed, epoch) gives the same plan, others give different orders
    assert plan(5, 3) == later_first
    assert plan(5, 0) == first
    assert plan(5, 1) != first
    assert plan(6, 0) != first
    # And an unshuffled plan is the same whatever the epoch
    unshuffled = [b.tolist() for b in dataset.epoch_plan(lengths, 8, 0, 0, shuffle=False)]
    assert unshuffled == [b.tolist() for b in dataset.epoch_plan(lengths, 8, 9, 4, shuffle=False)]


def test_epoch_plan_groups_similar_lengths_in_a_batch() -> None:
    # Given rows of varied lengths
    lengths = np.random.default_rng(4).integers(1, 1000, size=800)

    # When an epoch is planned
    plan = dataset.epoch_plan(lengths, 16, seed=0, epoch=0)

    # Then batches span much narrower length ranges than random batches would
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in plan])
    assert spread < 200


@pytest.mark.parametrize("n", [1, 5, 16, 17, 399, 400, 401, 800, 1234])
@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_steps_per_epoch_matches_the_plan(n: int, batch_size: int) -> None:
    # Given some number of rows and a batch size
    lengths = np.random.default_rng(n).integers(1, 300, size=n)

    # When / then the step count equals the plan's batch count, in every epoch
    for epoch in (0, 1):
        plan = dataset.epoch_plan(lengths, batch_size, seed=1, epoch=epoch)
        assert dataset.steps_per_epoch(n, batch_size) == len(plan)


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(x), np.asarray(y)) for x, y in ds]


@pytest.mark.parametrize("pad_end", [False, True], ids=["front", "end"])
def test_make_dataset_yields_padded_batches(varied_split_path: Path, pad_end: bool) -> None:
    # Given a split of varied lengths (label == row number)
    split = dataset.load_split(varied_split_path, sequence_length=70)
    rows = _rows(split)

    # When the batches of two epochs are made, padded at the front or at the end
    batches = _batches(
        dataset.make_dataset(split, 16, seed=3, first_epoch=0, last_epoch=2, pad_end=pad_end)
    )

    # Then there is one batch per planned step of each epoch
    assert len(batches) == 2 * dataset.steps_per_epoch(len(split), 16)
    seen = []
    for x, y in batches:
        assert x.dtype == np.int32
        assert x.shape[1] % 32 == 0
        for xi, label in zip(x, y, strict=True):
            seq = rows[int(label)]
            # zeros only at one end (the start, or the end where the model masks them, the
            # only layout cuDNN's LSTM accepts with a mask); the rest is the sequence itself
            pad = x.shape[1] - len(seq)
            assert pad >= 0
            padding, tokens = (xi[len(seq) :], xi[: len(seq)]) if pad_end else (xi[:pad], xi[pad:])
            assert not padding.any()
            assert tokens.tolist() == seq
            seen.append(int(label))
    # And every row appears once per epoch
    assert sorted(seen) == sorted(list(range(len(split))) * 2)


def test_make_dataset_follows_the_epoch_plans(varied_split_path: Path) -> None:
    # Given a split
    split = dataset.load_split(varied_split_path, sequence_length=70)

    # When the batches of epochs [1, 3) are made
    batches = _batches(dataset.make_dataset(split, 8, seed=2, first_epoch=1, last_epoch=3))

    # Then they hold the rows of the plans of epochs 1 and 2, in order
    plans = dataset.epoch_plan(split.lengths, 8, 2, 1) + dataset.epoch_plan(split.lengths, 8, 2, 2)
    assert [y.astype(int).tolist() for _, y in batches] == [p.tolist() for p in plans]


def test_training_and_evaluation_datasets_run_without_the_autotuner(
    varied_split_path: Path,
) -> None:
    # Given a split
    split = dataset.load_split(varied_split_path, sequence_length=70)

    # When the training and the evaluation datasets are made
    made = [
        dataset.make_dataset(split, 16, seed=1, first_epoch=0, last_epoch=5, pad_end=True),
        dataset.make_eval_dataset(split),
    ]

    # Then tf.data's autotuner is off for both: its thread, which sleeps up to 60 s between
    # rounds, once held the end of `fit` for 35-45 s while their iterators were destroyed
    assert [ds.options().autotune.enabled for ds in made] == [False, False]


def test_resumed_epochs_get_the_same_batches_as_an_uninterrupted_run(
    varied_split_path: Path,
) -> None:
    # Given a split
    split = dataset.load_split(varied_split_path, sequence_length=70)

    # When the batches of epochs [0, 4) and of epochs [2, 4) are made
    whole = _batches(dataset.make_dataset(split, 16, seed=11, first_epoch=0, last_epoch=4))
    resumed = _batches(dataset.make_dataset(split, 16, seed=11, first_epoch=2, last_epoch=4))

    # Then the resumed batches are exactly the tail of the uninterrupted ones
    steps = dataset.steps_per_epoch(len(split), 16)
    assert len(whole) == 4 * steps
    tail = whole[2 * steps :]
    assert len(resumed) == len(tail)
    for (xr, yr), (xw, yw) in zip(resumed, tail, strict=True):
        assert np.array_equal(xr, xw)
        assert np.array_equal(yr, yw)


def test_eval_order_matches_the_eval_dataset_row_order(varied_split_path: Path) -> None:
    # Given a split whose label identifies each row
    split = dataset.load_split(varied_split_path, sequence_length=70)
    rows = _rows(split)

    # When the evaluation batches are made with a batch size that leaves a partial batch
    batches = _batches(dataset.make_eval_dataset(split, 32))
    order = dataset.eval_order(split, 32)

    # Then the rows come in `eval_order`, each once, with its own sequence
    labels = np.concatenate([y for _, y in batches])
    assert labels.astype(int).tolist() == order.tolist()
    assert sorted(order.tolist()) == list(range(len(split)))
    for x, y in batches:
        for xi, label in zip(x, y, strict=True):
            seq = rows[int(label)]
            assert xi[len(xi) - len(seq) :].tolist() == seq
    # And the order is the same every time
    again = np.concatenate([y for _, y in _batches(dataset.make_eval_dataset(split, 32))])
    assert np.array_equal(labels, again)


def test_eval_order_matches_labels_of_a_tokenised_split(tokenized) -> None:
    # Given a tokenised validation split with real 0/1 labels
    split = dataset.load_split(tokenized.split_path("validation"), sequence_length=40)

    # When evaluation batches are made
    labels = np.concatenate([np.asarray(y) for _, y in dataset.make_eval_dataset(split, 5)])

    # Then `eval_order` maps them back onto the split's labels
    assert np.array_equal(labels, split.labels[dataset.eval_order(split, 5)])
