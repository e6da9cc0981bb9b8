"""Early stopping and best-model tracking: the training state a checkpoint carries beside the
model (in its state.json), so that a resumed run stops and selects exactly as an unbroken one."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


def better(value: float, best: float | None, monitor: str) -> bool:
    """Whether `value` of `monitor` improves on `best` (accuracy rises, loss falls; NaN never)."""
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if monitor.endswith("accuracy") else value < best


@dataclass(frozen=True)
class Tracker:
    """Where training stands after `epoch` epochs."""

    epoch: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    wait: int = 0  # epochs since the last improvement
    stopped_early: bool = False
    history: tuple[dict[str, float], ...] = ()

    @property
    def improved(self) -> bool:
        """Whether the last epoch was the best so far."""
        return self.epoch > 0 and self.best_epoch == self.epoch

    def after_epoch(
        self, done: int, metrics: dict[str, float], monitor: str, patience: int | None
    ) -> Tracker:
        """The tracker after epoch `done` (1-based) ended with `metrics`; `patience` None: no
        early stopping."""
        value = metrics.get(monitor, float("nan"))
        if better(value, self.best_value, monitor):
            best = {"best_value": value, "best_epoch": done, "wait": 0}
        else:
            best = {"wait": self.wait + 1}
        history = (*self.history, {"epoch": done, **metrics})
        step = replace(self, epoch=done, history=history, **best)
        return replace(step, stopped_early=patience is not None and step.wait > patience)

    def to_state(self) -> dict[str, Any]:
        """JSON-able form, as stored in a checkpoint's state.json."""
        return {**asdict(self), "history": list(self.history)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tracker:
        """The tracker of a checkpoint's state.json (other keys, such as RNG states, ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        return cls(**{**values, "history": tuple(values.get("history", ()))})
