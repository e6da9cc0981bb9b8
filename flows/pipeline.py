"""imdb-pipeline: fetch -> tokenize -> pretrain -> train -> evaluate -> export."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from flows.shared import finish_run, prepare_data
from tasks.config import PipelineConfig
from tasks.core.notify import on_flow_failure
from tasks.core.runs import create_run


@flow(name="imdb-pipeline", log_prints=True, on_failure=[on_flow_failure])
def pipeline(config: PipelineConfig = PipelineConfig(), run_id: str | None = None) -> dict:
    """The whole job on the archive. `run_id` names the run folder (default: a new timestamped
    one). The nightly (flows/nightly.py) adds new data, the champion decision and scoring."""
    data = prepare_data(config)
    run_dir = create_run(config.artifacts_dir.resolve(), config, data, run_id, flow_run.get_id())
    return finish_run(config, data, run_dir)
