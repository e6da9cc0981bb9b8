"""The champion model: artifacts/models/champion, switched atomically to a better run's export."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.core.atomic import fsync_dir
from tasks.serving.export import KERAS_FILE

CHAMPION = "champion"


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaced the champion, and the scores that decided it."""

    promoted: bool
    challenger: str
    challenger_accuracy: float
    champion: str | None
    champion_accuracy: float | None
    examples: int


def current_champion(models_dir: Path) -> Path | None:
    """The export the champion link points to, if it exists and holds a model."""
    link = models_dir / CHAMPION
    if not link.is_symlink():
        return None
    target = link.resolve()
    return target if (target / KERAS_FILE).exists() else None


def validation_accuracy(model_dir: Path, validation_parquet: Path) -> tuple[float, int]:
    """Accuracy of an exported model on raw validation texts (each model uses its tokenizer)."""
    from tasks.serving.predict import Predictor

    table = pq.read_table(validation_parquet, columns=["text", "label"])
    prob = Predictor(model_dir).predict(table.column("text").to_pylist())
    labels = np.asarray(table.column("label"), dtype=np.int64)
    return float(((prob >= 0.5) == labels).mean()), len(labels)


def promote_if_better(models_dir: Path, challenger: Path, validation_parquet: Path) -> Decision:
    """Point `champion` at `challenger` if it is at least as good on this validation split."""
    new_acc, n = validation_accuracy(challenger, validation_parquet)
    incumbent = current_champion(models_dir)
    old_acc = validation_accuracy(incumbent, validation_parquet)[0] if incumbent else None
    promoted = old_acc is None or new_acc >= old_acc
    if promoted:
        switch_champion(models_dir, challenger)
    return Decision(
        promoted=promoted,
        challenger=challenger.name,
        challenger_accuracy=new_acc,
        champion=incumbent.name if incumbent else None,
        champion_accuracy=old_acc,
        examples=n,
    )


def switch_champion(models_dir: Path, target: Path) -> None:
    """Replace the `champion` symlink in one rename: readers see the old or the new model."""
    tmp = models_dir / f".{CHAMPION}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target.name, tmp)  # relative: the models folder can move
    os.replace(tmp, models_dir / CHAMPION)
    fsync_dir(models_dir)
