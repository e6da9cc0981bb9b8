"""The deployment end-to-end scenario of test_deployments.py again, with the Prefect server on
PostgreSQL: the database named by IMDB_TEST_PREFECT_DB, which scripts/test-postgres.sh sets
(a throwaway cluster; `make test` runs the suite inside it under CI or IMDB_TEST_POSTGRES=1).
The case of a flow run killed alone is left to the SQLite run: the dead-worker case already
takes the crash, the automation and the resume through PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.flows.test_deployments import deploy_run_crash_and_automatic_resume

DATABASE_URL = os.environ.get("IMDB_TEST_PREFECT_DB", "")
pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not DATABASE_URL,
        reason="no PostgreSQL: IMDB_TEST_PREFECT_DB is unset (scripts/test-postgres.sh sets it)",
    ),
]


def flow_runs_per_deployment(database_url: str) -> dict[str, int]:
    """The flow runs recorded in the PostgreSQL database itself that ran (not the ones the
    nightly's schedule created for later), per deployment name."""
    import asyncpg

    async def count() -> dict[str, int]:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch(
                "SELECT d.name, count(*) FROM flow_run f JOIN deployment d"
                " ON f.deployment_id = d.id WHERE f.start_time IS NOT NULL GROUP BY d.name"
            )
        finally:
            await conn.close()
        return {name: n for name, n in rows}

    return asyncio.run(count())


def test_deploy_run_crash_and_automatic_resume_on_postgresql(tmp_path: Path) -> None:
    # Given an empty PostgreSQL database
    assert DATABASE_URL.startswith("postgresql+asyncpg://"), DATABASE_URL
    # When / then: the deployment scenario passes on a server that uses it
    deploy_run_crash_and_automatic_resume(tmp_path, DATABASE_URL, flow_kill=False)
    # And its runs are in that database: two nightlies, the pipeline run killed with its
    # worker, and the resume run it triggered
    runs = flow_runs_per_deployment(DATABASE_URL)
    assert runs.get("nightly") == 2 and runs.get("pipeline") == 1, runs
    assert runs.get("resume", 0) >= 1, runs
