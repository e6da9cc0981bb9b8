"""prepare: fetch the IMDB archive and tokenise it to parquet."""

from __future__ import annotations

from prefect import flow

from flows.shared import prepare_data
from tasks.config import PipelineConfig
from tasks.data.prepared import summary


@flow(name="prepare", log_prints=True)
def prepare(config: PipelineConfig = PipelineConfig()) -> dict:
    """Fetch the archive and tokenise it; returns a JSON-able summary."""
    return summary(prepare_data(config))
