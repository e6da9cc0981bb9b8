"""score: batch-score unlabelled reviews (a file or a folder of them) to parquet."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.serving.steps import score_reviews


@flow(name="score", log_prints=True)
def score(
    input: Path,
    model: str = "champion",
    output: Path | None = None,
    artifacts_dir: Path = Path("artifacts"),
) -> dict:
    """Score `input` (.txt, .jsonl, .csv, .parquet, or a folder of them) with `model` ("champion"
    or an exported folder); output defaults to `<input>.scored.parquet` / `<folder>-scored/`."""
    chosen: str | Path = model if model == "champion" else Path(model)
    summary = score_reviews(Path(input), chosen, Path(output) if output else None, artifacts_dir)
    print(
        f"scored {summary['rows']} reviews ({summary['positive']} positive) with "
        f"{summary['model_id']} in {summary['seconds']:.1f} s: {summary['output']}"
    )
    return {"flow": "score", **summary}
