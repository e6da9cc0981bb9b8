"""Tests of the training tracker: best epoch, early stopping and its checkpointed state."""

from __future__ import annotations

import json
import math

import pytest

from tasks.training import tracker as tracker_mod
from tasks.training.tracker import Tracker


def test_better_compares_in_the_monitor_direction() -> None:
    # Given / when / then: accuracy must rise, loss must fall, NaN never improves
    assert tracker_mod.better(0.5, None, "val_accuracy")
    assert tracker_mod.better(0.6, 0.5, "val_accuracy")
    assert not tracker_mod.better(0.5, 0.5, "val_accuracy")
    assert not tracker_mod.better(0.4, 0.5, "val_accuracy")
    assert tracker_mod.better(0.4, 0.5, "val_loss")
    assert not tracker_mod.better(0.5, 0.5, "val_loss")
    assert not tracker_mod.better(0.6, 0.5, "val_loss")
    assert not tracker_mod.better(math.nan, None, "val_loss")
    assert tracker_mod.better(0.9, math.nan, "val_loss")
    assert not tracker_mod.better(math.nan, 0.5, "val_accuracy")


def _epochs(values: list[float], monitor: str, patience: int | None) -> list[Tracker]:
    """The tracker after each epoch whose `monitor` metric took the given values."""
    trackers = [Tracker()]
    for done, value in enumerate(values, start=1):
        metrics = {"loss": 1.0 / done, monitor: value}
        trackers.append(trackers[-1].after_epoch(done, metrics, monitor, patience))
    return trackers[1:]


def test_a_fresh_tracker_has_no_epoch_and_no_best() -> None:
    # Given / when a tracker before the first epoch
    fresh = Tracker()

    # Then it has done nothing, and has not improved
    assert (fresh.epoch, fresh.best_value, fresh.best_epoch, fresh.wait) == (0, None, None, 0)
    assert not fresh.stopped_early
    assert fresh.history == ()
    assert not fresh.improved


def test_after_epoch_records_improvements_and_counts_stalled_epochs() -> None:
    # When val_loss falls, stalls twice, then falls below the best again (patience 3)
    t1, t2, t3, t4, t5 = _epochs([0.9, 0.7, 0.8, 0.7, 0.6], "val_loss", patience=3)

    # Then every improvement becomes the best epoch and resets the wait
    assert (t1.best_epoch, t1.best_value, t1.wait, t1.improved) == (1, 0.9, 0, True)
    assert (t2.best_epoch, t2.best_value, t2.wait, t2.improved) == (2, 0.7, 0, True)
    # And an epoch that does not improve (equal counts as not better) only adds to the wait
    assert (t3.best_epoch, t3.best_value, t3.wait, t3.improved) == (2, 0.7, 1, False)
    assert (t4.best_epoch, t4.best_value, t4.wait, t4.improved) == (2, 0.7, 2, False)
    assert (t5.best_epoch, t5.best_value, t5.wait, t5.improved) == (5, 0.6, 0, True)
    assert not any(t.stopped_early for t in (t1, t2, t3, t4, t5))
    # And the history holds one row per epoch, with its number and metrics
    assert [t.epoch for t in (t1, t2, t3, t4, t5)] == [1, 2, 3, 4, 5]
    assert t5.history[2] == {"epoch": 3, "loss": 1.0 / 3, "val_loss": 0.8}
    assert len(t5.history) == 5
    # And the trackers are values: the earlier ones are unchanged
    assert len(t1.history) == 1


def test_after_epoch_stops_once_the_wait_exceeds_the_patience() -> None:
    # When val_accuracy improves once, then stalls three times with patience 2
    trackers = _epochs([0.6, 0.6, 0.5, 0.55], "val_accuracy", patience=2)

    # Then it stops after the third epoch without improvement, not before
    assert [t.wait for t in trackers] == [0, 1, 2, 3]
    assert [t.stopped_early for t in trackers] == [False, False, False, True]
    assert trackers[-1].best_epoch == 1


def test_patience_zero_stops_at_the_first_epoch_without_improvement() -> None:
    # When val_accuracy stalls at the second epoch with patience 0
    first, second = _epochs([0.6, 0.6], "val_accuracy", patience=0)

    # Then it stops right there
    assert not first.stopped_early
    assert second.stopped_early


def test_patience_none_never_stops_early() -> None:
    # When val_accuracy never improves after the first of 20 epochs, without early stopping
    trackers = _epochs([0.6] + [0.5] * 19, "val_accuracy", patience=None)

    # Then it keeps counting the wait but never stops
    assert trackers[-1].wait == 19
    assert trackers[-1].best_epoch == 1
    assert not any(t.stopped_early for t in trackers)


def test_a_missing_or_nan_monitor_never_improves() -> None:
    # Given a tracker with a best epoch
    best = Tracker().after_epoch(1, {"val_loss": 0.5}, "val_loss", None)

    # When the next epochs report no val_loss, then NaN
    missing = best.after_epoch(2, {"loss": 0.4}, "val_loss", None)
    nan = missing.after_epoch(3, {"val_loss": math.nan}, "val_loss", None)

    # Then neither improves on the best
    assert (missing.best_epoch, missing.wait, missing.improved) == (1, 1, False)
    assert (nan.best_epoch, nan.wait, nan.improved) == (1, 2, False)


def test_state_round_trip_through_json_ignores_extra_keys() -> None:
    # Given a tracker after three epochs, and its state as a checkpoint's state.json holds it
    tracker = _epochs([0.6, 0.7, 0.65], "val_accuracy", patience=1)[-1]
    state = json.loads(json.dumps(tracker.to_state()))
    assert state["history"][0] == {"epoch": 1, "loss": 1.0, "val_accuracy": 0.6}
    assert (state["epoch"], state["best_epoch"], state["wait"]) == (3, 2, 1)

    # When it is read back with the other keys a checkpoint stores beside it
    restored = Tracker.from_state({**state, "seed_generators": [[1, 2]], "future_key": "x"})

    # Then it is the same tracker (history a tuple again), and continues the same way
    assert restored == tracker
    assert isinstance(restored.history, tuple)
    metrics = {"val_accuracy": 0.6}
    assert restored.after_epoch(4, metrics, "val_accuracy", 1) == tracker.after_epoch(
        4, metrics, "val_accuracy", 1
    )


def test_from_state_of_a_fresh_state_gives_a_fresh_tracker() -> None:
    # Given / when / then: an empty state, or the state of a fresh tracker, reads as a fresh one
    assert Tracker.from_state({}) == Tracker()
    assert Tracker.from_state(Tracker().to_state()) == Tracker()
    assert Tracker.from_state({"seed_generators": []}) == Tracker()


def test_a_tracker_is_immutable() -> None:
    # Given a tracker / When a field is assigned / Then it refuses (checkpointed state is a value)
    with pytest.raises(AttributeError):
        Tracker().epoch = 3  # type: ignore[misc]
