"""Atomic, verifiable training checkpoints (the Keras 3 successor of `tf.train.latest_checkpoint`).

A checkpoint is a folder `epoch-NNNN/` holding `model.keras` (weights + optimizer state),
`state.json` (what Keras does not save: Dropout seed-generator states, early-stopping and
best-model trackers, history) and `manifest.json` (epoch, step, metrics, config hash, file
checksums), written last. The folder is built under a temporary name and renamed into place,
so a kill at any moment leaves either the old set of checkpoints or the new one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_dir, atomic_write_text, file_record, verified_manifest
from tasks.core.run_folder import RunFolder

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^epoch-(\d{4,})$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint folder."""

    path: Path
    manifest: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.manifest["epoch"])

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def state(self) -> dict[str, Any]:
        return json.loads((self.path / STATE_FILE).read_text())


def seed_generator_states(model: Any) -> list[list[int]]:
    """Dropout & co. keep their RNG in `seed_generator_state` variables that .keras omits.

    Listed in the model's variable order: the names carry a process-wide counter, so they
    differ between the process that saved and the one that resumes.
    """
    return [[int(x) for x in v.numpy().ravel()] for v in _seed_variables(model)]


def restore_seed_generator_states(model: Any, states: list[list[int]]) -> None:
    variables = _seed_variables(model)
    if len(variables) != len(states):
        raise ValueError(
            f"checkpoint holds {len(states)} random-generator states, model has {len(variables)}"
        )
    for variable, value in zip(variables, states, strict=True):
        variable.assign(value)


def _seed_variables(model: Any) -> list[Any]:
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def save_checkpoint(
    model: Any, dest: Path, manifest: dict[str, Any], state: dict[str, Any]
) -> Checkpoint:
    """Write model + state + manifest into `dest` atomically (replacing an older `dest`)."""
    with atomic_dir(dest) as tmp:
        model.save(tmp / MODEL_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        files = {name: file_record(tmp / name) for name in (MODEL_FILE, STATE_FILE)}
        full = {**manifest, "files": files}
        atomic_write_text(tmp / MANIFEST_FILE, json.dumps(full, indent=2, default=float))
    return Checkpoint(dest, full)


def copy_checkpoint(source: Checkpoint, dest: Path) -> Checkpoint:
    """Copy a verified checkpoint folder to `dest`, atomically like `save_checkpoint`."""
    with atomic_dir(dest) as tmp:
        for name in (MODEL_FILE, STATE_FILE, MANIFEST_FILE):  # the manifest last
            shutil.copyfile(source.path / name, tmp / name)
    return Checkpoint(dest, source.manifest)


def verify_checkpoint(path: Path) -> tuple[Checkpoint | None, str]:
    """The checkpoint at `path` and "" if its manifest and files verify, else (None, reason)."""
    manifest, damage = verified_manifest(path, MANIFEST_FILE)
    if manifest is None:
        return None, damage + (" (incomplete checkpoint)" if "missing" in damage else "")
    try:
        int(manifest["epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"{MANIFEST_FILE} has no valid epoch ({exc})"
    return Checkpoint(path, manifest), ""


def _by_epoch(folder: Path) -> list[tuple[int, Path]]:
    """(epoch, folder) of every `epoch-NNNN` folder under `folder`, by the epoch in its name."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(p for p in found if p[1].is_dir())


def _verified(path: Path, warn: bool) -> Checkpoint | None:
    ckpt, why = verify_checkpoint(path)
    if ckpt is None and warn:
        log.warning("skipping damaged checkpoint %s: %s", path, why)
    return ckpt


def list_checkpoints(folder: Path, warn: bool = True) -> list[Checkpoint]:
    """Valid checkpoints under `folder`, oldest epoch first; damaged ones are named and skipped."""
    found = [_verified(path, warn) for _, path in _by_epoch(folder)]
    return sorted((c for c in found if c is not None), key=lambda c: c.epoch)


def newest_checkpoint(folder: Path) -> Checkpoint | None:
    """The highest-epoch checkpoint under `folder` that verifies, never chosen by file time.

    Verified newest first, so only the checkpoints above the one returned (damaged ones, named
    in a warning) and that one are hashed.
    """
    for _, path in reversed(_by_epoch(folder)):
        ckpt = _verified(path, warn=True)
        if ckpt is not None:
            return ckpt
    return None


def find_latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The run's newest valid periodic checkpoint: where a resume continues."""
    return newest_checkpoint(RunFolder(run_dir).checkpoints)


def find_best_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The run's valid best-on-validation checkpoint: the model it evaluates and exports."""
    return newest_checkpoint(RunFolder(run_dir).best)


def checkpoint_dir(folder: Path, epoch: int) -> Path:
    return folder / f"epoch-{epoch:04d}"


def prune_checkpoints(folder: Path, keep: int, above: int | None = None) -> None:
    """Keep the newest `keep` checkpoints; with `above`, also drop epochs greater than it."""
    if not folder.is_dir():
        return
    epochs = _by_epoch(folder)
    doomed = [p for e, p in epochs if above is not None and e > above]
    kept = [p for e, p in epochs if above is None or e <= above]
    doomed += kept[: max(len(kept) - keep, 0)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    for stale in folder.glob(".epoch-*"):  # temp folders of saves that were killed
        shutil.rmtree(stale, ignore_errors=True)


def save_epoch(
    model: Any,
    run_dir: Path,
    manifest: dict[str, Any],
    state: dict[str, Any],
    *,
    improved: bool,
    periodic: bool,
    keep: int,
) -> None:
    """The checkpoints of the epoch `manifest` names: best/ if it `improved`, checkpoints/ if
    `periodic`, each written once (the periodic one copies the best one of the same epoch)."""
    epoch = int(manifest["epoch"])
    run = RunFolder(run_dir)
    best_dir = run.best
    best = None
    if improved:
        best = save_checkpoint(model, checkpoint_dir(best_dir, epoch), manifest, state)
    if not periodic:
        return
    folder = run.checkpoints
    dest = checkpoint_dir(folder, epoch)
    if best is not None:  # the same epoch: copying the files beats serialising again
        copy_checkpoint(best, dest)
    else:
        save_checkpoint(model, dest, manifest, state)
    prune_checkpoints(folder, keep=keep)
    # Older bests go only now: until a periodic checkpoint refers to the new best, a resume
    # restarts from a state whose best is the previous one, which must still exist.
    prune_checkpoints(best_dir, keep=1)
