"""The champion model (artifacts/models/champion, a symlink switched in one rename), what is
known of an export, and what a night reuses of the champion: nothing to train when its data and
settings are tonight's (`unchanged_reason`), a warm start (`warm_start`), its scores of new
files (`champion_scorer`). Whether a challenger replaces it is `promotion`'s rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.config import PipelineConfig
from tasks.core.atomic import fsync_dir
from tasks.serving import registry
from tasks.serving.exported import ExportedModel
from tasks.training.warm import WarmStart

CHAMPION = "champion"


@dataclass(frozen=True)
class ModelInfo:
    """What the decision needs to know of an exported model (from its model card)."""

    path: Path
    run_id: str
    data_version: str | None
    incoming: tuple[str, ...]
    config_digest: str | None
    test_metrics: dict = field(default_factory=dict)


def current_champion(models_dir: Path) -> Path | None:
    """The export the champion link points to, if it exists and holds a model."""
    link = models_dir / CHAMPION
    if not link.is_symlink():
        return None
    target = link.resolve()
    return target if ExportedModel(target).keras.exists() else None


def model_info(model_dir: Path) -> ModelInfo:
    """The model card's data version, incoming files and config digest (None where an older
    export does not record them)."""
    card = ExportedModel(model_dir).card()
    return ModelInfo(
        path=model_dir,
        run_id=model_dir.name,
        data_version=card.get("data_fingerprint"),
        incoming=tuple(card.get("data_incoming", ())),
        config_digest=card.get("config_digest"),
        test_metrics=card.get("test_metrics", {}),
    )


def unchanged_reason(models_dir: Path, data_version: str, config_digest: str) -> str | None:
    """Why training would only reproduce a model already judged, or None: the champion, or a
    candidate already decided about, has this data version and these settings (training is
    deterministic, so a retrained model would be the same one again)."""
    current = current_champion(models_dir)
    if current is not None:
        info = model_info(current)
        if info.data_version == data_version and info.config_digest == config_digest:
            return (
                f"data version {data_version} and config {config_digest} are those of the "
                f"champion {info.run_id}: nothing new to learn"
            )
    events = registry.read_events(models_dir)
    _, rolled = registry.reigns(events)
    for event in rolled.values():  # rolled back by hand, and not promoted since: not again
        same = (event.get("previous_data_version"), event.get("previous_config_digest")) == (
            data_version,
            config_digest,
        )
        if same:
            return (
                f"data version {data_version} and config {config_digest} are those of "
                f"{event['previous']}, rolled back by {event.get('user')}@{event.get('host')} "
                f"({event.get('reason') or 'no reason given'}): not trained again"
            )
    decided = {e["run_id"]: e for e in events if e["event"] == registry.DECISION}
    for event in events:
        same = (event.get("data_version"), event.get("config_digest")) == (
            data_version,
            config_digest,
        )
        if event["event"] == registry.CANDIDATE and same and event["run_id"] in decided:
            return (
                f"data version {data_version} and config {config_digest} were already trained "
                f"as {event['run_id']}, already judged ({decided[event['run_id']]['reason']}): "
                "nothing new to learn"
            )
    return None


def warm_start(
    models_dir: Path, config: PipelineConfig, new_share: float | None
) -> tuple[WarmStart | None, str]:
    """Where tonight's challenger starts, and why: from the champion's weights when warm starts
    are on, the champion has tonight's settings, and the new training reviews are a share of
    the text small enough to keep the archive's word vectors (`new_share`, None when they are
    learnt again); else from scratch."""
    epochs, config_digest = config.warm_start_epochs, config.digest()
    if epochs == 0:
        return None, "warm_start_epochs = 0: training from scratch"
    if config.ngram_order and not config.ngram_min_count:
        return None, "hashed n-gram ids cannot follow a new vocabulary: training from scratch"
    current = current_champion(models_dir)
    if current is None:
        return None, "no champion yet: training from scratch"
    info = model_info(current)
    if info.config_digest != config_digest:
        return None, (
            f"the champion {info.run_id} has other settings (config {info.config_digest}, "
            f"tonight {config_digest}): training from scratch"
        )
    if new_share is None:
        return None, (
            "the word vectors are learnt again on this data version (too much new text, or "
            "none): training from scratch"
        )
    export = ExportedModel(current)
    return WarmStart(export.keras, export.vocab_path, epochs), (
        f"warm start from the champion {info.run_id} for {epochs} epoch(s): the new training "
        f"reviews are {new_share:.2%} of the text and the settings are the champion's"
    )


def champion_scorer(models_dir: Path) -> tuple[str, Callable[[list[str]], np.ndarray]] | None:
    """(run id, positive probability of raw texts) of the champion, or None without one. The
    model is loaded on the first call, so a night that scores nothing never loads it."""
    current = current_champion(models_dir)
    if current is None:
        return None
    from tasks.serving.predict import Predictor

    loaded: list[Predictor] = []

    def predict(texts: list[str]) -> np.ndarray:
        if not loaded:
            loaded.append(Predictor(current))
        return loaded[0].predict(texts)

    return current.name, predict


def switch_champion(models_dir: Path, target: Path) -> None:
    """Replace the `champion` symlink in one rename: readers see the old or the new model."""
    tmp = models_dir / f".{CHAMPION}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target.name, tmp)  # relative: the models folder can move
    os.replace(tmp, models_dir / CHAMPION)
    fsync_dir(models_dir)
