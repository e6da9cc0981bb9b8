"""score: batch-score unlabelled reviews (a file or a folder of them) to parquet.

The flow is what the `score` deployment runs; `imdb-pipeline score` calls the same
`tasks.serving.score.score_input` directly (no flow run: nothing to orchestrate).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.serving.score import describe
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
    print(describe(summary))
    return {"flow": "score", **summary}
