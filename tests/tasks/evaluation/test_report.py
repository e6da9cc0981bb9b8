"""report.html: one self-contained page per run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tasks.core import environment
from tasks.core.run_folder import RunFolder
from tasks.evaluation import evaluate, report

DECISION = {
    "promoted": False,
    "reason": "not significantly better: <b>0.91</b> vs 0.92",
    "challenger": "night-2",
    "champion": "night-1",
    "challenger_accuracy": 0.91,
    "champion_accuracy": 0.92,
    "examples": 400,
    "challenger_only": 3,
    "champion_only": 7,
    "p_value": 0.34,
    "alpha": 0.05,
    "margin": 0.002,
}
INCOMING = [
    {"name": "more.jsonl", "status": "quarantined", "accepted_rows": 40, "rejected_rows": 5}
]


def finished_run(root: Path, epochs: int = 3) -> Path:
    """A run folder as evaluation leaves it: run.json, history.csv, metrics.json and plots."""
    run_dir = root / "runs" / "night-2"
    run_dir.mkdir(parents=True)
    info = {
        "run_id": "night-2",
        "status": "completed",
        "config_digest": "cfg",
        "data_fingerprint": "d6f2",
        "data_incoming": ["ab" * 32],
        "environment": environment.describe(),
    }
    (run_dir / "run.json").write_text(json.dumps(info))
    history = [
        {"epoch": e, "loss": 1 / e, "accuracy": 0.8, "val_loss": 1.1 / e, "val_accuracy": 0.79}
        for e in range(1, epochs + 1)
    ]
    RunFolder(run_dir).write_history(history)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    prob = np.clip(y * 0.7 + rng.normal(0.15, 0.2, 400), 0, 1)
    metrics = {"selected_epoch": epochs, **evaluate.binary_metrics(y, prob)}
    evaluate.write_metrics(run_dir / "metrics.json", metrics)
    if epochs:
        evaluate.plot_report(RunFolder(run_dir), history, metrics)
    return run_dir


def test_the_report_holds_every_section_inline_and_loads_nothing(tmp_path: Path) -> None:
    # Given a night's finished run and its export folder
    run_dir = finished_run(tmp_path)
    model_dir = tmp_path / "models" / "night-2"
    model_dir.mkdir(parents=True)

    # When its report is written with the night's decision and incoming files
    path = report.write_report(
        run_dir, (model_dir / "report.html",), decision=DECISION, incoming=INCOMING
    )

    # Then the run folder and the export hold the same page
    page = path.read_text()
    assert (model_dir / "report.html").read_text() == page
    # And it shows each part a reviewer looks for
    for heading in (
        "Test metrics (400 reviews)",
        "Training curves",
        "Per epoch",
        "Confusion matrix",
        "Calibration",
        "Data",
        "Incoming files tonight",
        "Champion decision",
        "Environment",
    ):
        assert re.search(rf"<h[23]>{re.escape(heading)}", page), heading
    assert page.count('src="data:image/png;base64,') == 3
    assert "d6f2" in page and "quarantined" in page and "night-1" in page
    assert environment.describe()["packages"]["keras"] in page
    # And the operator's text is escaped, and nothing is loaded from anywhere
    assert "&lt;b&gt;0.91&lt;/b&gt;" in page and "<b>" not in page
    assert "<script" not in page
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []


def test_a_run_without_a_finished_epoch_gets_no_report_and_a_clear_error(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path, epochs=0)
    with pytest.raises(report.ReportError, match="no finished epoch"):
        report.write_report(run_dir)
    assert not (run_dir / "report.html").exists()
