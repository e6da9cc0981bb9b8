"""`imdb-pipeline` command line: one subcommand per flow."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Prefect keeps its database and settings in PREFECT_HOME (default ~/.prefect); keep them in the
# working folder unless the user chose otherwise. Must happen before prefect is imported.
os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect waits 20 s for its temporary server by default: a busy 2-core machine needs more
# (a `train` beside a test suite timed out at 20 s).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from flows.operator import add_operator_commands  # noqa: E402
from tasks.config import PREPARE, ConfigError, PipelineConfig, load_config  # noqa: E402

ALL_FIELDS = tuple(PipelineConfig.model_fields)
DATA_FIELDS = PipelineConfig.fields_with(PREPARE)


def _is_bool(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(a is bool for a in args)
    return annotation is bool


def add_config_flags(parser: argparse.ArgumentParser, fields: Sequence[str]) -> None:
    """One flag per config field (`--vocab-size`), values validated by the config model."""
    parser.add_argument("--config", type=Path, help="YAML file with config fields")
    for name in fields:
        info = PipelineConfig.model_fields[name]
        flag = "--" + name.replace("_", "-")
        help_text = info.description or name.replace("_", " ")
        if _is_bool(info.annotation):
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            # Kept as text: the pydantic model converts and validates with a clear message.
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON summary line as the last line"
    )


def config_from_args(args: argparse.Namespace, fields: Sequence[str]) -> PipelineConfig:
    return load_config(args.config, **{name: getattr(args, name) for name in fields})


# A user's mistake (a bad archive or checksum, an invalid setting, a run that cannot be resumed,
# an unreadable incoming file) is a one-line message: Prefect's logs of it keep the message and
# drop the traceback, which would otherwise print once per task and again for the flow.
USER_ERRORS = frozenset(
    {
        "tasks.config.ConfigError",
        "tasks.data.archive.ArchiveError",
        "tasks.data.reviews.DataError",
        "tasks.data.download.FetchError",
        "tasks.data.review_files.ReviewFileError",
        "tasks.core.run_folder.RunError",
        "tasks.core.lock.RunLocked",
        "tasks.serving.moves.ChampionError",
        "tasks.ingest.held.IncomingError",
    }
)


def _without_user_error_tracebacks() -> None:
    """Log records of Prefect's loggers lose the traceback of a USER_ERRORS exception."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "quiet_user_errors", False):  # installed already (tests call main)
        return

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = make_record(*args, **kwargs)
        exc = rec.exc_info[1] if rec.exc_info else None
        kind = type(exc)
        named = f"{kind.__module__}.{kind.__qualname__}"
        if exc is not None and named in USER_ERRORS and rec.name.startswith("prefect"):
            rec.exc_info, rec.exc_text = None, None
        return rec

    record.quiet_user_errors = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _run_prepare(args: argparse.Namespace) -> dict:
    from tasks.data.prepared import already_prepared, summary

    config = config_from_args(args, DATA_FIELDS)
    # Decided before Prefect is imported: with everything in place and verifying there is no
    # work to orchestrate, so no flow run (and no temporary server).
    data = already_prepared(config, log=_say)
    if data is not None:
        _say(f"prepare: nothing to do, the data is cached: {data.path} (no flow run)")
        return {**summary(data), "cached": True}
    from flows.prepare import prepare

    return {**prepare(config), "cached": False}


def _run_train(args: argparse.Namespace) -> dict:
    from flows.pipeline import pipeline

    config = config_from_args(args, ALL_FIELDS)
    summary = pipeline(config, run_id=args.run_id)
    print(
        f"run {summary['run_id']}: test accuracy {summary['test_accuracy']:.4f} "
        f"(epoch {summary['selected_epoch']}), model in {summary['model_dir']}",
        file=sys.stderr,
    )
    return summary


def _run_nightly(args: argparse.Namespace) -> dict:
    from flows.nightly import nightly

    config = config_from_args(args, ALL_FIELDS)
    summary = nightly(config, run_id=args.run_id, keep_runs=args.keep_runs)
    if summary["trained"]:
        decision = summary["champion"]
        verdict = "promoted" if decision["promoted"] else "not promoted"
        print(f"run {summary['run_id']}: {verdict}: {decision['reason']}", file=sys.stderr)
    else:
        print(f"trained nothing: {summary['reason']}", file=sys.stderr)
    return summary


def _run_resume(args: argparse.Namespace) -> dict:
    from flows.resume import resume

    return resume(run_id=args.run_id, artifacts_dir=args.artifacts_dir, data_dir=args.data_dir)


# evaluate, predict and score have nothing to orchestrate: they run the functions the flows
# wrap, in this process, without importing Prefect.
def _run_evaluate(args: argparse.Namespace) -> dict:
    from tasks.serving.evaluate_export import evaluate_export

    return evaluate_export(args.model, args.data_dir)


def _run_predict(args: argparse.Namespace) -> None:
    from flows.predict import predict_command

    summary = predict_command(args.model, args.input, args.texts, args.json)
    _say(f"scored {summary['count']} reviews, {summary['positive']} positive")
    return None  # the output already is JSON Lines, one per text


def _run_score(args: argparse.Namespace) -> dict:
    from tasks.serving.score import describe, score_input

    summary = score_input(args.input, args.model, args.output, args.artifacts_dir)
    _say(describe(summary))
    return {"flow": "score", **summary}


def _run_mlflow_sync(args: argparse.Namespace) -> dict:
    from tasks.tracking.mlflow_sync import sync_all

    summary = sync_all(
        args.artifacts_dir.resolve(),
        args.tracking_uri,
        args.registered_model,
        progress=_say,
    )
    if summary["errors"]:
        raise RuntimeError("not logged: " + "; ".join(summary["errors"]))
    return {"flow": "mlflow-sync", **summary}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imdb-pipeline", description="Prefect-orchestrated IMDB sentiment LSTM pipeline"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="fetch the archive and tokenise it to parquet")
    add_config_flags(prep, DATA_FIELDS)
    prep.set_defaults(run=_run_prepare)

    train = sub.add_parser("train", help="the whole pipeline: fetch, tokenize, train, export")
    add_config_flags(train, ALL_FIELDS)
    train.add_argument("--run-id", help="name of the run folder (default: timestamp)")
    train.set_defaults(run=_run_train)

    night = sub.add_parser(
        "nightly",
        help="ingest new labelled reviews, train a challenger if anything changed, promote it "
        "only if really better, score the waiting reviews",
    )
    add_config_flags(night, ALL_FIELDS)
    night.add_argument("--run-id", help="name of the run folder if it trains (default: timestamp)")
    night.add_argument(
        "--keep-runs", type=int, default=5, help="finished runs kept besides the champion's"
    )
    night.set_defaults(run=_run_nightly)

    res = sub.add_parser("resume", help="continue a run from its newest valid checkpoint")
    res.add_argument("--run-id", help="run to continue (default: the newest unfinished run)")
    res.add_argument("--data-dir", type=Path, help="default: the run's own data_dir")
    res.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
    res.add_argument("--json", action="store_true", help="print one JSON summary line last")
    res.set_defaults(run=_run_resume)

    ev = sub.add_parser("evaluate", help="re-evaluate an exported model on its test split")
    ev.add_argument("--model", type=Path, required=True, help="artifacts/models/<run_id>")
    ev.add_argument("--data-dir", type=Path, default=Path("data"))
    ev.add_argument("--json", action="store_true", help="print one JSON summary line last")
    ev.set_defaults(run=_run_evaluate)

    pr = sub.add_parser("predict", help="score review text with an exported model")
    pr.add_argument("--model", type=Path, required=True, help="artifacts/models/<run_id>")
    pr.add_argument("--input", type=Path, help=".txt (one per line), .jsonl, .csv or .parquet")
    pr.add_argument("texts", nargs="*", help="review texts")
    pr.add_argument("--json", action="store_true", help="JSON Lines output")
    pr.set_defaults(run=_run_predict)

    sc = sub.add_parser("score", help="batch-score a review file or folder to parquet")
    sc.add_argument(
        "--input", type=Path, required=True, help=".txt, .jsonl, .csv, .parquet or a folder"
    )
    sc.add_argument(
        "--model", default="champion", help="champion (default) or artifacts/models/<run_id>"
    )
    sc.add_argument("--output", type=Path, help="default: <input>.scored.parquet, <folder>-scored/")
    sc.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
    sc.add_argument("--json", action="store_true", help="print one JSON summary line last")
    sc.set_defaults(run=_run_score)

    ml = sub.add_parser(
        "mlflow-sync",
        help="log to MLflow what the run folders hold and it lacks (after an outage, or runs "
        "from before tracking was on), then move the champion alias",
    )
    ml.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
    ml.add_argument(
        "--tracking-uri",
        help="default: each run's mlflow_tracking_uri, else MLFLOW_TRACKING_URI",
    )
    ml.add_argument(
        "--registered-model", help="default: each run's mlflow_registered_model (imdb-sentiment)"
    )
    ml.add_argument("--json", action="store_true", help="print one JSON summary line last")
    ml.set_defaults(run=_run_mlflow_sync)

    add_operator_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], dict | None] = args.run
    _without_user_error_tracebacks()
    try:
        summary = run(args)
    except ConfigError as exc:
        print(f"imdb-pipeline: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the flow already logged the traceback
        print(f"imdb-pipeline {args.command} failed: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"flow": args.command, "ok": False, "error": str(exc)}))
        return 1
    if args.json and summary is not None:
        sys.stderr.flush()
        print(json.dumps({**summary, "ok": True}, default=str))
    return 0


def entry() -> None:
    """The `imdb-pipeline` console script: `main`, then an exit that leaves the heap to the
    operating system."""
    code = main()
    # The interpreter's shutdown ends with collections that walk every object TensorFlow and
    # Prefect created: 0.8 s of a one-review `predict`'s 4.9 s. Frozen objects are skipped;
    # atexit handlers (which stop Prefect's temporary server) and buffered output still run.
    gc.freeze()
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
