"""Shared fixtures: small synthetic archives, a tiny exported model and one Prefect test server
per session."""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from tests.imdb_fixtures import Exported, build_archive, export_tiny_model  # noqa: E402

REAL_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "imdb" / "aclImdb_v1.tar.gz"
REAL_SHA256 = "c9c64a8c8c2c9012e75cd4de5d427bb34cd7bd4ce4a791eaf2543cf24ee217f5"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def no_source_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a user's IMDB_SOURCE / IMDB_SHA256 (tests that need them set them)."""
    monkeypatch.delenv("IMDB_SOURCE", raising=False)
    monkeypatch.delenv("IMDB_SHA256", raising=False)


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]
) -> T:
    """`build(folder)`, run once per test session even with pytest-xdist: the first worker to
    ask builds it in a folder all workers see, under a lock, and leaves its result pickled
    there; the others wait for it and load it. (Its files are shared: tests must not change
    them.)"""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, result = root / f"once-{name}", root / f"once-{name}.pickle"
    with (root / f"once-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if result.exists():
            return pickle.loads(result.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # a worker that failed to build it
        folder.mkdir()
        value = build(folder)
        result.with_suffix(".tmp").write_bytes(pickle.dumps(value))
        result.with_suffix(".tmp").rename(result)
        return value


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 reviews in each labelled folder, 4 reviews per movie (one file for all workers)."""
    return once_per_session(
        tmp_path_factory, "archive", lambda folder: build_archive(folder / "aclImdb_v1.tar.gz")
    )


@pytest.fixture(scope="session")
def exported(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A tiny model trained 8 epochs on the small archive and exported, once for all workers
    (tests must not change its folders: copy what they write into)."""
    return once_per_session(
        tmp_path_factory, "export", lambda folder: export_tiny_model(small_archive, folder)
    )


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server (temporary database) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    # Each pytest-xdist worker starts its own, several at once on 2 cores (11-14 s alone on a
    # quiet machine, minutes on a loaded one): a generous limit, as it fails the whole worker.
    with prefect_test_harness(server_startup_timeout=300):
        yield


# Left out by `make test-fast` (-m "not slow"): the real archive (marked in its module) and
# these end-to-end runs of real servers and child processes.
SLOW_FILES = (
    "tests/flows/test_deployments.py",
    "tests/flows/test_deployments_postgres.py",
    "tests/flows/test_mlflow.py",
    "tests/flows/test_one_writer.py",
    "tests/tasks/training/test_resume_exact.py",
)
SLOW_TESTS = (
    "tests/tasks/training/test_distribute.py::test_mirrored_over_two_cpus_trains_checkpoints_and_resumes_on_one_device",
    "tests/tasks/training/test_distribute.py::test_two_workers_train_one_epoch_and_only_the_chief_writes_one_checkpoint",
    "tests/flows/test_prepare_dask.py::test_dask_cluster_of_two_processes_writes_the_default_paths_data",
)
# Under pytest-xdist (`make test`: --dist loadfile --no-loadscope-reorder) each worker takes
# whole files in this order, with one or two more queued behind the file it runs: the longest
# files start at once, each on its own worker, with quick files queued behind them; every
# other file follows in its usual order.
FIRST_FILES = (
    "tests/flows/test_deployments.py",
    "tests/flows/test_deployments_postgres.py",
    "tests/tasks/training/test_resume_exact.py",
    "tests/flows/test_mlflow.py",
    "tests/flows/test_batch_checks_real.py",
    "tests/tasks/test_config.py",
    "tests/tasks/evaluation/test_stats.py",
    "tests/tasks/core/test_memory.py",
    "tests/tasks/training/test_distribute.py",
    "tests/flows/test_one_writer.py",
    "tests/flows/test_nightly.py",
)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in SLOW_FILES or item.nodeid.split("[", 1)[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    rank = {path: i for i, path in enumerate(FIRST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
