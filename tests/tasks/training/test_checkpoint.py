"""Tests of atomic, verifiable checkpoints: saving, verifying, choosing, pruning, RNG state."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from tasks.config import PipelineConfig
from tasks.training import checkpoint as ckpt
from tests.imdb_fixtures import fail_temp_folder_renames, tiny_config


def _config(**overrides) -> PipelineConfig:
    # Only builds models: the paths and validation_fraction tiny_config adds are never used.
    settings = dict(epochs=3, dropout=0.5, embedding_dropout=0.3)
    return tiny_config(Path(), **{**settings, **overrides})


@pytest.fixture(scope="module")
def model():
    """A tiny compiled model with SpatialDropout1D and Dropout (two seed generators)."""
    from tasks.training.model import build_model

    return build_model(_config())


def _save(model, folder: Path, epoch: int) -> ckpt.Checkpoint:
    manifest = {"epoch": epoch, "global_step": 10 * epoch, "metrics": {"val_loss": 1.0 / epoch}}
    state = {"epoch": epoch, "seed_generators": ckpt.seed_generator_states(model)}
    return ckpt.save_checkpoint(model, ckpt.checkpoint_dir(folder, epoch), manifest, state)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_checkpoint_writes_a_verifiable_folder_per_epoch(model, tmp_path: Path) -> None:
    # Given a run's checkpoint folder
    folder = tmp_path / "checkpoints"

    # When epochs 1..3 are saved
    saved = [_save(model, folder, e) for e in (1, 2, 3)]

    # Then each epoch has its own complete folder and nothing else is left behind
    assert _names(folder) == ["epoch-0001", "epoch-0002", "epoch-0003"]
    for c, epoch in zip(saved, (1, 2, 3), strict=True):
        assert c.epoch == epoch
        assert c.model_path == folder / f"epoch-{epoch:04d}" / "model.keras"
        assert _names(c.path) == ["manifest.json", "model.keras", "state.json"]
        manifest = json.loads((c.path / "manifest.json").read_text())
        assert manifest["epoch"] == epoch
        assert manifest["global_step"] == 10 * epoch
        assert set(manifest["files"]) == {"model.keras", "state.json"}
        for info in manifest["files"].values():
            assert len(info["sha256"]) == 64 and info["bytes"] > 0
        verified, why = ckpt.verify_checkpoint(c.path)
        assert why == ""
        assert verified is not None and verified.epoch == epoch
        assert c.state()["epoch"] == epoch
    # And they are listed oldest first; the latest is the highest epoch
    assert [c.epoch for c in ckpt.list_checkpoints(folder)] == [1, 2, 3]
    latest = ckpt.find_latest_checkpoint(tmp_path)
    assert latest is not None and latest.epoch == 3


def test_find_latest_checkpoint_of_a_run_without_checkpoints(tmp_path: Path) -> None:
    # Given a run folder without checkpoints (none yet, or an empty folder)
    # When / then there is nothing to resume from
    assert ckpt.find_latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    assert ckpt.find_latest_checkpoint(tmp_path) is None
    assert ckpt.find_best_checkpoint(tmp_path) is None


def _truncate_model(path: Path) -> None:
    f = path / "model.keras"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_manifest(path: Path) -> None:
    (path / "manifest.json").unlink()


def _flip_bytes(path: Path) -> None:
    f = path / "model.keras"
    data = bytearray(f.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    f.write_bytes(bytes(data))


def _corrupt_state(path: Path) -> None:
    (path / "state.json").write_text('{"epoch": 99}')


def _garble_manifest(path: Path) -> None:
    (path / "manifest.json").write_text("{not json")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate_model, "bytes"),
        (_delete_manifest, "manifest.json is missing"),
        (_flip_bytes, "checksum"),
        (_corrupt_state, "state.json"),
        (_garble_manifest, "unreadable"),
    ],
)
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(
    model, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, reason: str
) -> None:
    # Given checkpoints of epochs 1..3 whose newest is damaged
    folder = tmp_path / "checkpoints"
    for e in (1, 2, 3):
        _save(model, folder, e)
    newest = folder / "epoch-0003"
    damage(newest)

    # When the latest checkpoint is looked for
    with caplog.at_level(logging.WARNING, logger="tasks.training.checkpoint"):
        latest = ckpt.find_latest_checkpoint(tmp_path)

    # Then the previous one is chosen, and a warning names the damaged one and why
    assert latest is not None and latest.epoch == 2
    assert ckpt.verify_checkpoint(newest)[0] is None
    assert reason in ckpt.verify_checkpoint(newest)[1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in w and reason in w for w in warnings), warnings


def test_checkpoints_are_chosen_by_epoch_never_by_mtime(model, tmp_path: Path) -> None:
    # Given checkpoints of epochs 1..3, the oldest of which was touched last
    folder = tmp_path / "checkpoints"
    for e in (1, 2, 3):
        _save(model, folder, e)
    future = os.stat(folder / "epoch-0003").st_mtime + 3600
    for path in [folder / "epoch-0001", *(folder / "epoch-0001").iterdir()]:
        os.utime(path, (future, future))

    # When the latest checkpoint is looked for
    latest = ckpt.find_latest_checkpoint(tmp_path)

    # Then it is still the highest epoch
    assert latest is not None and latest.epoch == 3


def test_folders_that_are_not_checkpoints_are_ignored(model, tmp_path: Path) -> None:
    # Given a checkpoint plus unrelated entries and a killed save's temporary folder
    folder = tmp_path / "checkpoints"
    _save(model, folder, 2)
    (folder / "notes.txt").write_text("hello")
    (folder / "epoch-0009").write_text("a file, not a folder")
    (folder / ".epoch-0005.abc.tmp").mkdir()

    # When the checkpoints are listed
    found = ckpt.list_checkpoints(folder)

    # Then only the real checkpoint counts
    assert [c.epoch for c in found] == [2]


def test_prune_checkpoints_keeps_the_newest_and_removes_temp_folders(model, tmp_path: Path) -> None:
    # Given five checkpoints and the leftovers of two killed saves
    folder = tmp_path / "checkpoints"
    for e in range(1, 6):
        _save(model, folder, e)
    (folder / ".epoch-0006.x1.tmp").mkdir()
    (folder / ".epoch-0006.x1.tmp" / "model.keras").write_bytes(b"partial")
    (folder / ".epoch-0004.old").mkdir()

    # When pruned to two
    ckpt.prune_checkpoints(folder, keep=2)

    # Then the two newest remain, intact, and no temporary folder is left
    assert _names(folder) == ["epoch-0004", "epoch-0005"]
    assert [c.epoch for c in ckpt.list_checkpoints(folder)] == [4, 5]


def test_prune_checkpoints_above_drops_later_epochs(model, tmp_path: Path) -> None:
    # Given checkpoints of epochs 1..5 (a killed attempt got past epoch 3)
    folder = tmp_path / "checkpoints"
    for e in range(1, 6):
        _save(model, folder, e)

    # When a resume from epoch 3 prunes what lies beyond it, keeping up to 2
    ckpt.prune_checkpoints(folder, keep=2, above=3)

    # Then epochs 4 and 5 are gone and the two newest up to 3 remain
    assert _names(folder) == ["epoch-0002", "epoch-0003"]


def test_prune_checkpoints_of_a_missing_folder_does_nothing(tmp_path: Path) -> None:
    # Given no folder / When pruned / Then nothing happens
    ckpt.prune_checkpoints(tmp_path / "missing", keep=1)
    assert not (tmp_path / "missing").exists()


def _assert_untouched(folder: Path, before: dict[str, dict]) -> None:
    for name, manifest in before.items():
        verified, why = ckpt.verify_checkpoint(folder / name)
        assert verified is not None, why
        assert verified.manifest == manifest


def test_a_save_that_fails_midway_leaves_no_complete_looking_folder(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two good checkpoints
    folder = tmp_path / "checkpoints"
    before = {c.path.name: c.manifest for c in (_save(model, folder, e) for e in (1, 2))}

    # And a model whose save writes part of the file and then dies
    def broken_save(path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)

    # When epoch 3 is saved
    with pytest.raises(OSError, match="disk full"):
        _save(model, folder, 3)

    # Then there is no epoch-0003 and no temporary folder; the old checkpoints are untouched
    assert _names(folder) == ["epoch-0001", "epoch-0002"]
    _assert_untouched(folder, before)
    latest = ckpt.find_latest_checkpoint(tmp_path)
    assert latest is not None and latest.epoch == 2


def test_a_save_that_fails_at_the_rename_leaves_the_old_set(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two good checkpoints
    folder = tmp_path / "checkpoints"
    before = {c.path.name: c.manifest for c in (_save(model, folder, e) for e in (1, 2))}

    # And a rename of the finished temporary folder that fails
    fail_temp_folder_renames(monkeypatch)

    # When epoch 3 is saved, and when epoch 2 is saved again (a re-run after a resume)
    with pytest.raises(OSError, match="killed"):
        _save(model, folder, 3)
    with pytest.raises(OSError, match="killed"):
        _save(model, folder, 2)

    # Then the folder holds exactly the old checkpoints, untouched, and no temporary folder
    assert _names(folder) == ["epoch-0001", "epoch-0002"]
    _assert_untouched(folder, before)


def test_saving_an_existing_epoch_replaces_it(model, tmp_path: Path) -> None:
    # Given a checkpoint of epoch 2
    folder = tmp_path / "checkpoints"
    _save(model, folder, 2)

    # When epoch 2 is saved again with other metrics
    ckpt.save_checkpoint(
        model, ckpt.checkpoint_dir(folder, 2), {"epoch": 2, "metrics": {"val_loss": 0.1}}, {}
    )

    # Then the new checkpoint replaced the old one, with nothing left over
    assert _names(folder) == ["epoch-0002"]
    latest = ckpt.find_latest_checkpoint(tmp_path)
    assert latest is not None and latest.manifest["metrics"] == {"val_loss": 0.1}


def test_seed_generator_states_round_trip(model) -> None:
    import keras

    # Given a model with dropout layers and a batch of inputs
    x = np.random.default_rng(0).integers(1, 60, size=(4, 40)).astype("int32")
    states = ckpt.seed_generator_states(model)
    assert len(states) >= 2  # SpatialDropout1D and Dropout (Keras 3.15: the LSTM has one too)
    assert all(isinstance(v, int) for s in states for v in s)

    # When the model runs in training mode, the generators advance
    first = np.asarray(model(x, training=True))
    assert ckpt.seed_generator_states(model) != states
    second = np.asarray(model(x, training=True))
    assert not np.array_equal(first, second)

    # Then restoring the saved states replays the same dropout masks
    ckpt.restore_seed_generator_states(model, states)
    assert ckpt.seed_generator_states(model) == states
    assert np.array_equal(np.asarray(model(x, training=True)), first)

    # And the states survive a JSON round trip into a freshly built model
    from tasks.training.model import build_model

    keras.utils.set_random_seed(123)
    other = build_model(_config())
    other.set_weights(model.get_weights())
    ckpt.restore_seed_generator_states(other, json.loads(json.dumps(states)))
    assert np.array_equal(np.asarray(other(x, training=True)), first)


def test_restoring_a_wrong_number_of_states_fails(model) -> None:
    # Given the states of a model with two generators
    states = ckpt.seed_generator_states(model)

    # When / then restoring them into a model shaped otherwise fails clearly
    with pytest.raises(ValueError, match="random-generator states"):
        ckpt.restore_seed_generator_states(model, states[:1])


def test_copy_checkpoint_gives_an_identical_verifiable_folder(model, tmp_path: Path) -> None:
    # Given a best checkpoint of epoch 2
    best = _save(model, tmp_path / "best", 2)

    # When it is copied into the periodic checkpoints
    copy = ckpt.copy_checkpoint(best, ckpt.checkpoint_dir(tmp_path / "checkpoints", 2))

    # Then the copy verifies, holds the same bytes and leaves no temporary folder
    assert ckpt.find_latest_checkpoint(tmp_path).epoch == 2
    for name in (ckpt.MODEL_FILE, ckpt.STATE_FILE, ckpt.MANIFEST_FILE):
        assert (copy.path / name).read_bytes() == (best.path / name).read_bytes()
    assert _names(tmp_path / "checkpoints") == ["epoch-0002"]


def test_a_copy_that_fails_midway_leaves_nothing(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a best checkpoint and a disk that fails while the manifest is copied
    best = _save(model, tmp_path / "best", 3)
    real_copy = ckpt.shutil.copyfile

    def failing_copy(src, dst, *args, **kwargs):
        if Path(dst).name == ckpt.MANIFEST_FILE:
            raise OSError("disk full")
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(ckpt.shutil, "copyfile", failing_copy)

    # When the copy is attempted
    with pytest.raises(OSError, match="disk full"):
        ckpt.copy_checkpoint(best, ckpt.checkpoint_dir(tmp_path / "checkpoints", 3))

    # Then no checkpoint folder, complete-looking or temporary, is left
    assert _names(tmp_path / "checkpoints") == []
