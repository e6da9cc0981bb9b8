"""The champion model (artifacts/models/champion) and the challenger decision.

A challenger replaces the champion only when, scored on the same held-out reviews, it is
better by McNemar's paired test at level `alpha`, or it was trained on strictly newer data and
is at most `margin` less accurate. Every decision and promotion is appended to the registry
(`registry.jsonl`) exactly once per run, and the `champion` symlink switches in one rename.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.config import PipelineConfig
from tasks.core.atomic import fsync_dir
from tasks.evaluation.stats import mcnemar
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


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaced the champion, why, and the figures that decided it."""

    promoted: bool
    reason: str
    challenger: str
    champion: str | None
    challenger_accuracy: float
    champion_accuracy: float | None
    examples: int
    p_value: float | None  # McNemar's exact test on the reviews the two models disagree on
    challenger_only: int  # reviews only the challenger got right
    champion_only: int
    alpha: float
    margin: float
    challenger_data: str | None
    champion_data: str | None
    newer_data: bool


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


def correct_on(model_dir: Path, parquet: Path) -> np.ndarray:
    """Whether the exported model gets each review of `parquet` right, from its raw text (each
    model applies its own saved tokenizer, so models of other data versions compare fairly)."""
    from tasks.serving.predict import Predictor

    table = pq.read_table(parquet, columns=["text", "label"])
    prob = Predictor(model_dir).predict(table.column("text").to_pylist())
    labels = np.asarray(table.column("label"), dtype=np.int64)
    return (prob >= 0.5) == labels


def decide(
    challenger: ModelInfo,
    challenger_correct: np.ndarray,
    champion: ModelInfo | None,
    champion_correct: np.ndarray | None,
    alpha: float,
    margin: float,
) -> Decision:
    """The promotion rule (see the module docstring), on per-review correctness."""
    n = len(challenger_correct)
    acc = float(np.mean(challenger_correct)) if n else 0.0
    base = {
        "challenger": challenger.run_id,
        "challenger_accuracy": acc,
        "examples": n,
        "alpha": alpha,
        "margin": margin,
        "challenger_data": challenger.data_version,
    }
    if champion is None or champion_correct is None:
        return Decision(
            promoted=True,
            reason="no champion yet",
            champion=None,
            champion_accuracy=None,
            p_value=None,
            challenger_only=0,
            champion_only=0,
            champion_data=None,
            newer_data=False,
            **base,
        )
    test = mcnemar(challenger_correct, champion_correct)
    old = float(np.mean(champion_correct)) if n else 0.0
    p = float(test["p_value"])
    newer = set(champion.incoming) < set(challenger.incoming)
    if acc > old and p < alpha:
        promoted, reason = True, f"better: {acc:.4f} vs {old:.4f}, McNemar p = {p:.3g} < {alpha}"
    elif newer and acc >= old - margin:
        promoted, reason = (
            True,
            (
                f"trained on strictly newer data and not worse by more than {margin}: "
                f"{acc:.4f} vs {old:.4f} (p = {p:.3g})"
            ),
        )
    else:
        why = "not trained on strictly newer data" if not newer else f"worse by over {margin}"
        promoted, reason = (
            False,
            (
                f"not significantly better: {acc:.4f} vs {old:.4f}, McNemar p = {p:.3g} "
                f"(alpha {alpha}), and {why}"
            ),
        )
    return Decision(
        promoted=promoted,
        reason=reason,
        champion=champion.run_id,
        champion_accuracy=old,
        p_value=p,
        challenger_only=int(test["only_a"]),
        champion_only=int(test["only_b"]),
        champion_data=champion.data_version,
        newer_data=newer,
        **base,
    )


def promote(
    models_dir: Path, challenger_dir: Path, heldout_parquet: Path, alpha: float, margin: float
) -> Decision:
    """Decide about `challenger_dir` against the current champion on `heldout_parquet`, record
    the candidate, the decision and a promotion in the registry, and switch the link.

    Idempotent per run: a decision already recorded for the challenger's run is reused, not
    taken again (a resumed nightly records exactly one), and a promotion decided but not yet
    carried out (a crash between the two) is completed.
    """
    challenger = model_info(challenger_dir)
    run_id = challenger.run_id
    recorded = registry.find_event(models_dir, registry.DECISION, run_id)
    if recorded is not None:
        decision = Decision(**{f.name: recorded[f.name] for f in fields(Decision)})
    else:
        if registry.find_event(models_dir, registry.CANDIDATE, run_id) is None:
            registry.append_event(
                models_dir,
                registry.CANDIDATE,
                run_id,
                model_dir=str(challenger_dir),
                data_version=challenger.data_version,
                incoming=list(challenger.incoming),
                config_digest=challenger.config_digest,
            )
        incumbent = current_champion(models_dir)
        champion = model_info(incumbent) if incumbent else None
        decision = decide(
            challenger,
            correct_on(challenger_dir, heldout_parquet),
            champion,
            correct_on(incumbent, heldout_parquet) if incumbent else None,
            alpha,
            margin,
        )
        registry.append_event(
            models_dir, registry.DECISION, run_id, heldout=str(heldout_parquet), **asdict(decision)
        )
    if decision.promoted and registry.find_event(models_dir, registry.PROMOTION, run_id) is None:
        switch_champion(models_dir, challenger_dir)
        registry.append_event(models_dir, registry.PROMOTION, run_id, previous=decision.champion)
    return decision


def switch_champion(models_dir: Path, target: Path) -> None:
    """Replace the `champion` symlink in one rename: readers see the old or the new model."""
    tmp = models_dir / f".{CHAMPION}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target.name, tmp)  # relative: the models folder can move
    os.replace(tmp, models_dir / CHAMPION)
    fsync_dir(models_dir)
