"""`prepare` with its tokenisation sharded on a Dask cluster gives the default path's data."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from uuid import UUID

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from flows.cli import DATA_FIELDS, build_parser, config_from_args
from flows.prepare import prepare
from flows.shared import dask_task_runner
from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.data import tokenize
from tasks.data.processed import SPLITS, load_processed

pytestmark = pytest.mark.usefixtures("prefect_server")


def _shard_states(parent_flow_run_id: UUID, expected: int, timeout_s: float = 30.0) -> list[str]:
    """State names of the tokenize_shard task runs under the parent's subflow runs.

    Task runs reach the server through events, so wait until `expected` of them are final.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            subflows = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_flow_run_id])
                )
            )
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[f.id for f in subflows])
                )
            )
        states = [
            r.state.name
            for r in runs
            if r.name.startswith("tokenize_shard") and r.state is not None
        ]
        final = [s for s in states if s == "Completed"]
        if len(final) >= expected or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def test_dask_cluster_of_two_processes_writes_the_default_paths_data(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the small archive (160 labelled + 20 unlabelled reviews), prepared once on the
    # default path
    common = {"source": str(small_archive), "sha256": file_sha256(small_archive), "vocab_size": 60}
    default = prepare(PipelineConfig(**common, data_dir=tmp_path / "default"))

    # When it is prepared on a local Dask cluster of 2 worker processes, in shards of 24 reviews
    monkeypatch.setattr(tokenize, "SHARD", 24)
    config = PipelineConfig(
        **common, data_dir=tmp_path / "dask", task_runner="dask", dask_workers=2
    )
    state = prepare(config, return_state=True)

    # Then it succeeds, with every shard a completed Prefect task run
    assert state.is_completed(), state
    sharded = state.result()
    assert _shard_states(state.state_details.flow_run_id, 8) == ["Completed"] * 8
    # and it describes the same data: same fingerprint and counts, in its own folder
    assert sharded["fingerprint"] == default["fingerprint"]
    assert sharded["counts"] == default["counts"]
    ours, theirs = Path(sharded["data_path"]), Path(default["data_path"])
    assert ours.is_relative_to((tmp_path / "dask").resolve())
    assert load_processed(ours) is not None
    # and the files are the same: vocabulary bytes, parquet tables, file digests
    assert (ours / "vocab.txt").read_bytes() == (theirs / "vocab.txt").read_bytes()
    for split in SPLITS:
        assert pq.read_table(ours / f"{split}.parquet").equals(
            pq.read_table(theirs / f"{split}.parquet")
        ), split
        assert file_sha256(ours / f"{split}.parquet") == file_sha256(theirs / f"{split}.parquet")


def test_cli_flags_choose_the_dask_runner_without_changing_the_digest() -> None:
    # Given the prepare command line with the Dask options
    argv = ["prepare", "--task-runner", "dask", "--dask-address", "tcp://10.0.0.5:8786"]
    args = build_parser().parse_args([*argv, "--dask-workers", "3"])

    # When it becomes a config
    config = config_from_args(args, DATA_FIELDS)

    # Then the execution settings are set, and they change neither the config's digest
    assert (config.task_runner, config.dask_address, config.dask_workers) == (
        "dask",
        "tcp://10.0.0.5:8786",
        3,
    )
    assert config.digest() == PipelineConfig(source=config.source, sha256=config.sha256).digest()
    # and the runner connects to the given scheduler instead of starting a cluster
    assert dask_task_runner(config).address == "tcp://10.0.0.5:8786"


def test_dask_runner_without_prefect_dask_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given prefect-dask cannot be imported
    monkeypatch.setitem(sys.modules, "prefect_dask", None)

    # When a Dask runner is asked for, then the error names the missing package
    with pytest.raises(RuntimeError, match="prefect-dask"):
        dask_task_runner(PipelineConfig(task_runner="dask"))
