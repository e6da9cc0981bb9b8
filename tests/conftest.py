"""Shared fixtures: small synthetic archives, a tiny exported model and one Prefect test server
per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from tests.imdb_fixtures import Exported, build_archive, export_tiny_model  # noqa: E402

REAL_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "imdb" / "aclImdb_v1.tar.gz"
REAL_SHA256 = "c9c64a8c8c2c9012e75cd4de5d427bb34cd7bd4ce4a791eaf2543cf24ee217f5"


@pytest.fixture(autouse=True)
def no_source_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a user's IMDB_SOURCE / IMDB_SHA256 (tests that need them set them)."""
    monkeypatch.delenv("IMDB_SOURCE", raising=False)
    monkeypatch.delenv("IMDB_SHA256", raising=False)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 reviews in each labelled folder, 4 reviews per movie."""
    return build_archive(tmp_path_factory.mktemp("archive") / "aclImdb_v1.tar.gz")


@pytest.fixture(scope="session")
def exported(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A tiny model trained 8 epochs on the small archive and exported (tests must not change
    its folders: copy what they write into)."""
    return export_tiny_model(small_archive, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server (temporary database) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
