"""The operator's commands of `imdb-pipeline`: `champion` (show, history, promote, rollback) and
`incoming` (list, release, reject). Each is plain Python (no flow run), prints what it did on
stderr and returns the JSON summary `--json` prints."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tasks.config import PipelineConfig, load_config


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def add_operator_commands(sub: argparse._SubParsersAction) -> None:
    """The `champion` and `incoming` subcommands, added to the CLI's subparsers."""
    ch = sub.add_parser("champion", help="show the champion, its history; promote, roll back")
    actions = ch.add_subparsers(dest="action", required=True)
    for name, text in (
        ("show", "the current champion, its metrics, data version and promotion"),
        ("history", "every candidate, decision, promotion and rollback, newest first"),
        ("promote", "make an exported model the champion"),
        ("rollback", "back to the previous champion (never to one rolled back), or to --to"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
        action.add_argument("--json", action="store_true", help="print one JSON line last")
        if name in ("promote", "rollback"):
            action.add_argument("--reason", help="why, recorded in registry.jsonl")
            action.add_argument(
                "--tracking-uri", help="MLflow server whose alias follows (MLFLOW_TRACKING_URI)"
            )
            action.add_argument(
                "--registered-model",
                default=PipelineConfig.model_fields["mlflow_registered_model"].default,
            )
            action.add_argument("--notify-url", help="alerts go here (default: IMDB_NOTIFY_URL)")
        if name == "promote":
            action.add_argument("run_id", help="the export artifacts/models/<run_id>")
        if name == "rollback":
            action.add_argument("--to", help="the export to go back to (default: the previous)")
        action.set_defaults(run=_run_champion)

    inc = sub.add_parser(
        "incoming", help="list the ingested files; release or reject one the batch checks held"
    )
    actions = inc.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "every ingested file, newest first: status, rows, failed checks, decisions"),
        ("release", "a held file's rows join the next data version"),
        ("reject", "a held file's rows are never used (they are kept in data/rejected/)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--data-dir", type=Path, default=Path("data"))
        action.add_argument("--json", action="store_true", help="print one JSON line last")
        if name == "list":
            action.add_argument("--status", help="only files with this status (e.g. held)")
        else:
            action.add_argument("file", help="its file name, or the start of its sha256")
            action.add_argument("--reason", help="why, recorded in its ledger entry")
        action.set_defaults(run=_run_incoming)


def _run_champion(args: argparse.Namespace) -> dict:
    from tasks.serving import moves

    models_dir = args.artifacts_dir.resolve() / "models"
    if args.action == "show":
        shown = moves.show(models_dir)
        since = shown["champion_since"] or {}
        _say(
            f"champion {shown['run_id']}: test accuracy {shown['test_accuracy']}, data version "
            f"{shown['data_version']}, config {shown['config_digest']}; "
            f"{since.get('event', 'no promotion recorded')} {since.get('time', '')}".rstrip()
        )
        return {"flow": "champion", **shown}
    if args.action == "history":
        events = moves.history(models_dir)
        for e in events:
            details = {k: v for k, v in e.items() if k in ("previous", "reason", "promoted")}
            _say(f"{e.get('time')}  {e.get('event'):<9}  {e.get('run_id')}  {details or ''}")
        return {"flow": "champion", "events": events}
    # Validated as the config's field (a malformed URL stops here, exit 2, before any move).
    notify_url = load_config(notify_url=args.notify_url).notify_url
    if args.action == "promote":
        event = moves.promote(models_dir, args.run_id, args.reason)
    else:
        event = moves.rollback(models_dir, args.to, args.reason)
    said = f"champion is now {event['run_id']} (was {event['previous']}), by hand"
    _say(said)
    from tasks.core.notify import notify

    kind = "promoted" if args.action == "promote" else "rolled_back"
    notify(
        notify_url,
        kind,
        said + (f": {args.reason}" if args.reason else ""),
        flow="champion",
        run_id=event["run_id"],
        new_model=event["run_id"],
        old_model=event["previous"],
    )
    return {"flow": "champion", **event, "mlflow": _move_alias(models_dir, args)}


def _run_incoming(args: argparse.Namespace) -> dict:
    from tasks.ingest import held

    data_dir = args.data_dir.resolve()
    if args.action == "list":
        files = held.list_incoming(data_dir, args.status)
        for f in files:
            failed = f"  failed: {', '.join(f['failed_checks'])}" if f["failed_checks"] else ""
            _say(
                f"{f['ingested_at']}  {f['status']:<11}  {f['sha256'][:12]}  {f['file']}  "
                f"rows {f['rows']}, accepted {f['accepted']}, rejected {f['rejected']}{failed}"
            )
        if not files:
            _say(f"no ingested files{' with status ' + args.status if args.status else ''}")
        return {"flow": "incoming", "files": files}
    entry = held.decide(data_dir, args.file, args.action, args.reason)
    where = "joins the next data version" if args.action == "release" else "is never used"
    _say(f"{entry['file']} ({entry['sha256'][:12]}) {entry['status']}: its rows {where}")
    return {"flow": "incoming", **entry}


def _move_alias(models_dir: Path, args: argparse.Namespace) -> dict | None:
    """MLflow's champion alias follows the link when tracking is on; a failure is a warning
    (the link and the registry line are written: `mlflow-sync` moves the alias later)."""
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    from tasks.tracking.mlflow_sync import sync_champion

    try:
        return sync_champion(models_dir, uri, args.registered_model)
    except Exception as exc:  # the move itself stands
        _say(f"warning: MLflow's champion alias not moved ({exc}); run imdb-pipeline mlflow-sync")
        return {"error": str(exc)}
