"""evaluate: re-evaluate an exported model on the test split of the data it was trained on.

`imdb-pipeline evaluate` calls `tasks.serving.evaluate_export.evaluate_export` directly (no flow
run: nothing to orchestrate); this flow is the same function as a Prefect run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.serving.evaluate_export import evaluate_export


@flow(name="evaluate")
def evaluate_exported(model: Path, data_dir: Path = Path("data")) -> dict:
    """Test metrics of an exported model (artifacts/models/<run_id>)."""
    return evaluate_export(model, data_dir)
