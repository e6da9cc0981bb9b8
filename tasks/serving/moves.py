"""What an operator does with the champion by hand: show it, read its history, promote a
chosen export, roll back.

Every move switches the `champion` link in one rename (as the nightly does) and appends its
line to registry.jsonl: kind `promotion` or `rollback`, `manual: true`, the reason, and who
(user and host). A rolled-back model is remembered: rollbacks never return to it, and a night
on its data version and settings trains nothing (`champion.unchanged_reason`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from tasks.core.environment import who
from tasks.serving import champion, registry
from tasks.serving.exported import EXPORT_FILES, KERAS_FILE, ExportedModel


class ChampionError(ValueError):
    """A champion command that cannot be carried out; nothing was changed."""


def verified_export(models_dir: Path, run_id: str) -> Path:
    """models_dir/run_id if it is a complete export that reads back, else ChampionError."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ChampionError(f"{run_id!r} is not a run id")
    folder = models_dir / run_id
    if not folder.is_dir() or folder.is_symlink():
        known = sorted(p.name for p in models_dir.glob("*") if p.is_dir() and not p.is_symlink())
        raise ChampionError(
            f"no exported model {run_id!r} in {models_dir} (exports: {', '.join(known) or 'none'})"
        )
    missing = [name for name in EXPORT_FILES if not (folder / name).is_file()]
    if missing:
        raise ChampionError(f"export {folder} is incomplete: {', '.join(missing)} missing")
    try:
        card = json.loads(ExportedModel(folder).card_path.read_text(encoding="utf-8"))
        with zipfile.ZipFile(ExportedModel(folder).keras) as archive:
            damaged = archive.testzip()
    except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise ChampionError(f"export {folder} does not read back: {exc}") from exc
    if damaged is not None:
        raise ChampionError(f"export {folder}: {KERAS_FILE} is damaged ({damaged} fails its CRC)")
    if card.get("run_id") != run_id:
        raise ChampionError(f"export {folder}: its model card names run {card.get('run_id')!r}")
    return folder


def show(models_dir: Path) -> dict[str, Any]:
    """The champion: run, test metrics, data version, settings, and the move that made it."""
    current = champion.current_champion(models_dir)
    if current is None:
        raise ChampionError(f"no champion in {models_dir}")
    info = champion.model_info(current)
    moves = [
        e
        for e in registry.read_events(models_dir)
        if e.get("event") in (registry.PROMOTION, registry.ROLLBACK)
    ]
    since = next((e for e in reversed(moves) if e["run_id"] == current.name), None)
    return {
        "run_id": info.run_id,
        "model_dir": str(current),
        "test_accuracy": info.test_metrics.get("accuracy"),
        "test_accuracy_ci95": info.test_metrics.get("accuracy_ci95"),
        "test_roc_auc": info.test_metrics.get("roc_auc"),
        "data_version": info.data_version,
        "data_incoming": list(info.incoming),
        "config_digest": info.config_digest,
        "champion_since": since,
    }


def history(models_dir: Path) -> list[dict[str, Any]]:
    """Every registry line, newest first."""
    return list(reversed(registry.read_events(models_dir)))


def promote(models_dir: Path, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """Make the export `run_id` the champion by hand."""
    target = verified_export(models_dir, run_id)
    current = champion.current_champion(models_dir)
    if current is not None and current.name == run_id:
        raise ChampionError(f"{run_id} is the champion already")
    champion.switch_champion(models_dir, target)
    return registry.append_event(
        models_dir,
        registry.PROMOTION,
        run_id,
        previous=current.name if current else None,
        manual=True,
        reason=reason,
        **who(),
    )


def rollback(models_dir: Path, to: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """Back to the champion before the current one (skipping models rolled back before), or to
    the export `to`; the current champion is remembered as rolled back."""
    current = champion.current_champion(models_dir)
    if current is None:
        raise ChampionError(f"no champion in {models_dir}: nothing to roll back")
    order, rolled = registry.reigns(registry.read_events(models_dir))
    if to is None:
        earlier = [r for r in reversed(order) if r != current.name and r not in rolled]
        if not earlier:
            raise ChampionError(f"{current.name} has no earlier champion to roll back to")
        to = earlier[0]
    if to == current.name:
        raise ChampionError(f"{to} is the champion already")
    target = verified_export(models_dir, to)
    info = champion.model_info(current)
    champion.switch_champion(models_dir, target)
    return registry.append_event(
        models_dir,
        registry.ROLLBACK,
        to,
        previous=current.name,
        previous_data_version=info.data_version,
        previous_config_digest=info.config_digest,
        manual=True,
        reason=reason,
        **who(),
    )
