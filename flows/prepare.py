"""prepare: fetch the IMDB archive and tokenise it to parquet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_client
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.config import PipelineConfig
from tasks.data.prepared import summary
from tasks.data.processed import ProcessedData, TokenizeParams
from tasks.data.steps import fetch_archive, publish_data_summary, submit_shard, tokenize_reviews
from tasks.data.tokenize import tokenize_archive
from tasks.ingest.accepted import AcceptedFile

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner


def prepare_data(config: PipelineConfig, incoming: Sequence[AcceptedFile] = ()) -> ProcessedData:
    """Fetch, then tokenise the archive plus the `incoming` accepted review files. The data
    folder, named by its fingerprint, is the one cache: an intact one is reused, a missing or
    damaged one is (re)built."""
    runner = dask_task_runner(config) if config.task_runner == "dask" else None  # fails fast
    data_dir = config.data_dir.resolve()
    archive = fetch_archive(config.source, data_dir / "raw", config.expected_sha256())
    params = TokenizeParams.from_config(config)
    if runner is not None:
        tokenize_sharded = tokenize_on_dask.with_options(task_runner=runner)
        return tokenize_sharded(
            archive.path, archive.sha256, data_dir / "processed", params, incoming
        )
    return tokenize_reviews(archive.path, archive.sha256, data_dir / "processed", params, incoming)


def dask_task_runner(config: PipelineConfig) -> DaskTaskRunner:
    """A DaskTaskRunner on `config.dask_address`, or on a local cluster of worker processes."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise RuntimeError(
            "task_runner 'dask' needs prefect-dask and dask.distributed: "
            "pip install 'imdb-pipeline[dask]'"
        ) from exc
    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    local = {"n_workers": config.dask_workers, "processes": True, "threads_per_worker": 1}
    return DaskTaskRunner(cluster_kwargs=local)


@flow(name="tokenize-on-dask")
def tokenize_on_dask(
    archive_path: Path,
    archive_sha256: str,
    processed_root: Path,
    params: TokenizeParams,
    incoming: Sequence[AcceptedFile] = (),
) -> ProcessedData:
    """Tokenise with the reviews' shards mapped as `tokenize_shard` tasks on the task runner."""
    with _workers_report_here():
        data = tokenize_archive(
            archive_path,
            archive_sha256,
            processed_root,
            params,
            progress=get_run_logger().info,
            submit=submit_shard,
            warn=get_run_logger().warning,
            incoming=incoming,
        )
    publish_data_summary(data)
    return data


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Send the Prefect API this process uses along with the tasks submitted to Dask.

    Without PREFECT_API_URL this process runs a temporary local Prefect server; each Dask
    worker would otherwise start one of its own (seconds each, and its records lost).
    """
    if PREFECT_API_URL.value():
        yield
        return
    url = str(get_client(sync_client=True).api_url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@flow(name="prepare", log_prints=True)
def prepare(config: PipelineConfig = PipelineConfig()) -> dict:
    """Fetch the archive and tokenise it; returns a JSON-able summary."""
    return summary(prepare_data(config))
