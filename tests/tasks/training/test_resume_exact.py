"""Training never loses work: a run SIGKILLed anywhere resumes to the uninterrupted result.

Each training attempt is a child process (tests/train_child.py) that resumes from the run's
newest valid checkpoint, as the `train_model` task does, and can kill itself with SIGKILL at
a chosen point: while a checkpoint or best-model checkpoint is being written, in the middle
of an epoch, or right after a checkpoint was saved. The kill hooks are monkeypatched inside
the child; the production code has none.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tasks.config import PipelineConfig
from tasks.data.processed import ProcessedData
from tasks.pretraining.word2vec import learn_word_vectors
from tasks.training import checkpoint as ckpt
from tasks.training import train as train_mod
from tests.imdb_fixtures import tiny_config, tokenize_small

ROOT = Path(__file__).resolve().parents[3]
EPOCHS = 4
_EPOCH_DIR = re.compile(r"^epoch-\d{4,}$")


@dataclass(frozen=True)
class Setup:
    config: PipelineConfig
    config_file: Path
    data: ProcessedData


@pytest.fixture(scope="module")
def setup(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """Tiny tokenised data and a dropout-heavy tiny config whose every epoch improves."""
    root = tmp_path_factory.mktemp("resume-exact")
    data = tokenize_small(small_archive, root / "processed")
    config = tiny_config(
        root,
        epochs=EPOCHS,
        deterministic=True,
        dropout=0.3,
        embedding_dropout=0.2,
        checkpoint_every=1,
        keep_checkpoints=10,
        early_stopping=False,
        monitor="val_loss",
    )
    config_file = root / "config.json"
    config_file.write_text(config.model_dump_json())
    return Setup(config, config_file, data)


@dataclass(frozen=True)
class Attempt:
    returncode: int
    resume_from: int | None
    output: str


def attempt(setup: Setup, run_dir: Path, kill: str | None = None) -> Attempt:
    """One training attempt in a fresh Python process, optionally killing itself at `kill`."""
    # -m from the repo root: run as a script, tests/ would come first on sys.path and its
    # `tasks` test package would shadow the real one.
    argv = [sys.executable, "-m", "tests.train_child", str(setup.config_file), str(setup.data.path)]
    argv += [str(run_dir)] + ([kill] if kill else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    resume_from = None
    for line in proc.stdout.splitlines():
        if line.startswith('{"resume_from"'):
            resume_from = json.loads(line)["resume_from"]
    return Attempt(proc.returncode, resume_from, proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def reference(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run: one child process training all epochs."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = attempt(setup, run_dir)
    assert done.returncode == 0, done.output
    assert done.resume_from == 0
    assert [c.epoch for c in ckpt.list_checkpoints(run_dir / "checkpoints")] == [1, 2, 3, 4]
    # Every epoch improves val_loss, so each one also writes a best-model checkpoint.
    best_epochs = [c.state()["best_epoch"] for c in ckpt.list_checkpoints(run_dir / "checkpoints")]
    assert best_epochs == [1, 2, 3, 4], "precondition: the kill points below need these bests"
    return run_dir


def assert_no_incomplete_checkpoint(run_dir: Path) -> None:
    """Every `epoch-NNNN` folder verifies; only dot-named temporary folders may be partial."""
    for folder in (run_dir / "checkpoints", run_dir / "best"):
        for path in folder.iterdir() if folder.is_dir() else []:
            if _EPOCH_DIR.match(path.name):
                found, why = ckpt.verify_checkpoint(path)
                assert found is not None, f"{path} is incomplete: {why}"
            else:
                assert path.name.startswith(".epoch-"), path


def epochs_of(folder: Path) -> list[int]:
    return [c.epoch for c in ckpt.list_checkpoints(folder, warn=False)]


def load(path: Path):
    from tasks.training.layers import load_model

    return load_model(path)


def assert_same_model(expected: ckpt.Checkpoint, actual: ckpt.Checkpoint) -> None:
    """Weights, optimizer variables, tracker state and metrics are bit-identical."""
    a, b = load(expected.model_path), load(actual.model_path)
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb, strict=True):
        assert np.array_equal(x, y), f"weights of {actual.path} differ from {expected.path}"
    oa = [v.numpy() for v in a.optimizer.variables]
    ob = [v.numpy() for v in b.optimizer.variables]
    assert len(oa) == len(ob) > 1  # the step counter and the Adam moments
    for x, y in zip(oa, ob, strict=True):
        assert np.array_equal(x, y), f"optimizer state of {actual.path} differs"
    assert actual.state() == expected.state()
    for key in ("epoch", "global_step", "metrics", "config_digest", "data_fingerprint"):
        assert actual.manifest[key] == expected.manifest[key], key


def assert_same_run(reference: Path, run_dir: Path) -> None:
    ref_ckpts = ckpt.list_checkpoints(reference / "checkpoints")
    got = ckpt.list_checkpoints(run_dir / "checkpoints")
    assert [c.epoch for c in got] == [c.epoch for c in ref_ckpts] == list(range(1, EPOCHS + 1))
    for expected, actual in zip(ref_ckpts, got, strict=True):
        assert_same_model(expected, actual)
    ref_best, best = ckpt.find_best_checkpoint(reference), ckpt.find_best_checkpoint(run_dir)
    assert ref_best is not None and best is not None
    assert best.epoch == ref_best.epoch
    assert_same_model(ref_best, best)
    assert (run_dir / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert_no_incomplete_checkpoint(run_dir)
    # No temporary folder of a killed save survives a completed run.
    for folder in (run_dir / "checkpoints", run_dir / "best"):
        assert [p.name for p in folder.iterdir() if not _EPOCH_DIR.match(p.name)] == []


def test_a_run_killed_again_and_again_ends_bit_identical_to_an_uninterrupted_one(
    setup: Setup, reference: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"

    def killed_at(kill: str, resume_from: int) -> None:
        result = attempt(setup, run_dir, kill)
        assert result.returncode == -signal.SIGKILL, result.output
        assert result.resume_from == resume_from, result.output
        assert_no_incomplete_checkpoint(run_dir)

    # Given a run killed in its pretraining stage, after learning the word vectors, before
    # their folder was complete
    killed_at("pretrain", resume_from=0)
    # Then no vectors and no checkpoint are there to be taken
    pretrained = run_dir.with_name("run.pretrained")
    assert [p.name for p in pretrained.iterdir() if not p.name.startswith(".")] == []
    assert epochs_of(checkpoints) == []

    # When it is restarted and killed while writing the manifest of its epoch-2 checkpoint
    killed_at("ckpt:2", resume_from=0)
    # Then only epoch 1 counts; epoch 2 is a temporary folder without a manifest
    assert epochs_of(checkpoints) == [1]
    assert not (checkpoints / "epoch-0002").exists()
    (partial,) = checkpoints.glob(".epoch-0002.*")
    assert (partial / ckpt.MODEL_FILE).is_file()
    assert not (partial / ckpt.MANIFEST_FILE).exists()

    # When it is resumed and killed in the middle of epoch 3 (after its 2nd batch)
    killed_at("batch:3:1", resume_from=1)
    # Then epochs 1 and 2 are checkpointed and the killed save's leftovers are gone
    assert epochs_of(checkpoints) == [1, 2]
    assert list(checkpoints.glob(".epoch-*")) == []
    assert epochs_of(run_dir / "best") == [2]

    # When it is resumed and killed while writing the best-model checkpoint of epoch 3
    killed_at("best:3", resume_from=2)
    # Then the previous best model is intact and epoch 3 exists nowhere
    assert epochs_of(checkpoints) == [1, 2]
    assert epochs_of(run_dir / "best") == [2]
    assert list((run_dir / "best").glob(".epoch-0003.*")) != []

    # When it is resumed and killed right after its epoch-3 checkpoint was saved
    killed_at("after:3", resume_from=2)
    assert epochs_of(checkpoints) == [1, 2, 3]

    # And it is resumed once more, without a kill
    done = attempt(setup, run_dir)

    # Then it continues from epoch 3 and finishes
    assert done.returncode == 0, done.output
    assert done.resume_from == 3
    assert '{"epochs_completed": 4}' in done.output
    # And every checkpoint, the best model and history.csv equal the uninterrupted run's
    assert_same_run(reference, run_dir)


class Interrupted(Exception):
    pass


def test_a_damaged_newest_checkpoint_is_skipped_and_the_resume_still_ends_exact(
    setup: Setup, reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a run that stopped after its epoch-3 checkpoint
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def stop_after_3(done: int, total: int, metrics: dict) -> None:
        if done == 3:
            raise Interrupted

    # (pretrained as the child process of the reference run is, tests/train_child.py)
    vectors = learn_word_vectors(setup.data, setup.config, tmp_path / "run.pretrained").load()
    with pytest.raises(Interrupted):
        train_mod.train(
            setup.config, setup.data, run_dir, on_epoch=stop_after_3, word_vectors=vectors
        )
    assert epochs_of(run_dir / "checkpoints") == [1, 2, 3]

    # And whose newest checkpoint was damaged (model.keras truncated)
    damaged = run_dir / "checkpoints" / "epoch-0003"
    model_file = damaged / ckpt.MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])

    # When the newest valid checkpoint is looked up
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        latest = ckpt.find_latest_checkpoint(run_dir)

    # Then it is epoch 2, with a warning naming the damaged folder
    assert latest is not None and latest.epoch == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(damaged) in w and "model.keras" in w for w in warnings), warnings

    # When training resumes from it to the end
    result = train_mod.train(setup.config, setup.data, run_dir, resume=latest)

    # Then the damaged epoch is redone and the run equals the uninterrupted one
    assert result.epochs_completed == EPOCHS
    assert_same_run(reference, run_dir)
