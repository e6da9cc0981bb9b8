"""Tests of `already_prepared` and `fetch.cached`: deciding, without Prefect and without any
download, whether `prepare` has anything to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.data import fetch
from tasks.data.prepared import already_prepared, summary
from tasks.data.processed import TokenizeParams, fingerprint
from tasks.data.tokenize import tokenize_archive


def _config(archive: Path, tmp_path: Path, **overrides) -> PipelineConfig:
    settings = {"data_dir": tmp_path / "data", "vocab_size": 500, **overrides}
    if "sha256" not in settings:
        settings["sha256"] = file_sha256(archive)
    return PipelineConfig(source=str(archive), **settings)


def _tokenise(config: PipelineConfig, archive: Path):
    processed = config.data_dir.resolve() / "processed"
    return tokenize_archive(
        archive, file_sha256(archive), processed, TokenizeParams.from_config(config)
    )


def test_already_prepared_only_when_the_archive_and_the_data_verify(
    small_archive: Path, tmp_path: Path
) -> None:
    # Given a config whose tokenised data does not exist yet
    config = _config(small_archive, tmp_path)

    # When / then there is something to do
    assert already_prepared(config) is None

    # Given the data tokenised as the flow would
    data = _tokenise(config, small_archive)

    # When asked again
    lines: list[str] = []
    found = already_prepared(config, log=lines.append)

    # Then it is that data (its summary is the flow's), and the log says what was verified
    assert found == data
    assert summary(found)["fingerprint"] == data.fingerprint == data.path.name
    assert any("verified" in line and str(data.path) in line for line in lines)

    # But another checksum for the archive, or other tokenizer settings, find nothing
    assert already_prepared(_config(small_archive, tmp_path, sha256="0" * 64)) is None
    assert already_prepared(_config(small_archive, tmp_path, vocab_size=400)) is None

    # And nor does a damaged data folder: the flow must rebuild it
    train = data.split_path("train")
    train.write_bytes(train.read_bytes()[:100])
    assert already_prepared(config) is None


def test_already_prepared_without_a_checksum_verifies_the_archive_it_names(
    small_archive: Path, tmp_path: Path
) -> None:
    # Given data tokenised from the archive, and a config without --sha256
    config = _config(small_archive, tmp_path, sha256=None)
    data = _tokenise(config, small_archive)

    # When asked, then the data is found under the archive's computed digest, logged to pin
    lines: list[str] = []
    assert already_prepared(config, log=lines.append) == data
    assert data.path.name == fingerprint(
        file_sha256(small_archive), TokenizeParams.from_config(config)
    )
    assert any(f"--sha256 {file_sha256(small_archive)}" in line for line in lines)

    # And a missing archive finds nothing (the flow then says it is not found)
    assert already_prepared(_config(tmp_path / "missing.tar.gz", tmp_path, sha256=None)) is None


def test_cached_archive_of_a_url_is_its_verified_copy_and_never_a_download(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a URL (nothing listens there) and downloads that would fail the test
    def no_download(*args, **kwargs):
        raise AssertionError("cached() must not download")

    monkeypatch.setattr(fetch, "download", no_download)
    url = "http://127.0.0.1:9/aclImdb_v1.tar.gz"
    raw = tmp_path / "raw"
    sha = file_sha256(small_archive)

    # When / then without a copy in raw/ it must be fetched
    assert fetch.cached(url, raw, sha) is None

    # Given a verified copy in raw/
    raw.mkdir()
    shutil.copyfile(small_archive, raw / "aclImdb_v1.tar.gz")

    # When / then that copy is the archive, not downloaded
    archive = fetch.cached(url, raw, sha)
    assert archive == fetch.FetchedArchive(
        raw / "aclImdb_v1.tar.gz", sha, small_archive.stat().st_size, url, downloaded=False
    )
    # But not for another checksum
    assert fetch.cached(url, raw, "1" * 64) is None
