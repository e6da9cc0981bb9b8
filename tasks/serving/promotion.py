"""The promotion rule: whether a challenger replaces the champion.

A challenger replaces the champion only when, scored on the same held-out reviews, it is
better by McNemar's paired test at level `alpha`, or it was trained on strictly newer data and
is at most `margin` less accurate. Every decision and promotion is appended to the registry
(`registry.jsonl`) exactly once per run, and the `champion` symlink switches in one rename.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.evaluation.stats import mcnemar
from tasks.serving import registry
from tasks.serving.champion import ModelInfo, current_champion, model_info, switch_champion


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
