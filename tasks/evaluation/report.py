"""report.html: one self-contained page per run for a reviewer.

Metrics with their interval, training curves, confusion matrix, calibration, the per-epoch
table, the data version and the incoming files, the champion decision of a night, and the
environment. Images are inline (data: URIs), the style is inline, and the page has no script
and loads nothing, so it opens the same from a run folder, an export, an e-mail or MLflow.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_write_text
from tasks.core.run_folder import RunError, RunFolder

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;
padding:.25rem .6rem;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child
{text-align:left}img{max-width:100%;margin:.5rem 0}code{background:#f3f3f3;padding:0 .2rem}
"""


class ReportError(ValueError):
    """A run whose report cannot be drawn (nothing is written)."""


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    return html.escape("" if value is None else str(value))


def _image(path: Path) -> str:
    if not path.is_file():
        return f"<p>{html.escape(path.name)}: not drawn</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render(
    run_dir: Path,
    decision: dict[str, Any] | None = None,
    incoming: list[dict[str, Any]] | None = None,
) -> str:
    """The page for the run in `run_dir` (its run.json, metrics.json, history.csv and plots);
    `decision` and `incoming` are a night's. ReportError when the run has no finished epoch or
    no test metrics yet."""
    run = RunFolder(run_dir)
    try:
        info = run.read_info()
        metrics = run.read_metrics()
    except (RunError, OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"no report for {run_dir.name}: {exc}") from exc
    history = run.read_history()
    if not history:
        raise ReportError(
            f"no report for {run_dir.name}: no finished epoch in {run.history_file.name}"
        )
    low, high = metrics.get("accuracy_ci95", (None, None))
    headline = [
        {
            "metric": "accuracy",
            "value": metrics["accuracy"],
            "95 % interval": f"{low:.4f}–{high:.4f}",
        }
    ] + [
        {"metric": k, "value": metrics[k]} for k in ("precision", "recall", "f1", "roc_auc", "loss")
    ]
    cm = metrics.get("confusion_matrix", {})
    matrix = [
        {"actual \\ predicted": "negative", "negative": cm.get("tn"), "positive": cm.get("fp")},
        {"actual \\ predicted": "positive", "negative": cm.get("fn"), "positive": cm.get("tp")},
    ]
    data = [
        {
            "data version": info.get("data_fingerprint"),
            "accepted files": len(info.get("data_incoming", [])),
        }
    ]
    sections = [
        f"<h1>Run <code>{html.escape(info.get('run_id', run_dir.name))}</code></h1>",
        f"<p>Status {html.escape(str(info.get('status')))}; selected epoch "
        f"{metrics.get('selected_epoch')} on validation; config "
        f"<code>{html.escape(str(info.get('config_digest')))}</code>.</p>",
        f"<h2>Test metrics ({metrics.get('examples', 0):,} reviews)</h2>",
        _table(headline),
        "<h2>Training curves</h2>",
        _image(run.training_curves),
        "<h2>Per epoch</h2>",
        _table([{k: _number(v) for k, v in row.items()} for row in history]),
        "<h2>Confusion matrix</h2>",
        _table(matrix),
        _image(run.confusion_matrix),
        "<h2>Calibration</h2>",
        _image(run.calibration),
        _table(metrics.get("calibration", [])),
        "<h2>Data</h2>",
        _table(data),
    ]
    if incoming is not None:
        files = [
            {
                **{k: f.get(k) for k in ("name", "status", "accepted_rows", "held_rows")},
                **{k: f.get(k) for k in ("rejected_rows", "sha256")},
                "failed checks": "; ".join(
                    c["detail"] for c in f.get("checks") or () if not c.get("passed", True)
                ),
            }
            for f in incoming
        ]
        sections += ["<h3>Incoming files tonight</h3>", _table(files)]
    if decision is not None:
        keys = (
            "promoted", "reason", "challenger", "champion", "challenger_accuracy",
            "champion_accuracy", "examples", "challenger_only", "champion_only", "p_value",
            "alpha", "margin",
        )  # fmt: skip
        sections += [
            "<h2>Champion decision (McNemar, same held-out reviews)</h2>",
            _table([{"field": k, "value": decision.get(k)} for k in keys]),
        ]
    env = info.get("environment") or {}
    packages = [{"package": k, "version": v} for k, v in (env.get("packages") or {}).items()]
    sections += [
        "<h2>Environment</h2>",
        _table([{k: env.get(k) for k in ("python", "platform", "git_commit", "lock_sha256")}]),
        _table(packages),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Run {html.escape(run_dir.name)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def _number(value: str) -> Any:
    try:
        return float(value) if "." in value or "e" in value else int(value)
    except ValueError:
        return value


def write_report(run_dir: Path, copies: tuple[Path, ...] = (), **night: Any) -> Path:
    """Render the report into the run folder and into each file of `copies` (the export's),
    each written atomically; the run folder's report."""
    page = render(run_dir, **night)
    path = RunFolder(run_dir).report
    for file in (path, *copies):
        atomic_write_text(file, page)
    return path
