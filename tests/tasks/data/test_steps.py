"""Tests of the data stage's Prefect tasks, each run inside a tiny flow on the test server."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from prefect.artifacts import Artifact

from tasks.core.atomic import file_sha256
from tasks.data.fetch import FetchError
from tasks.data.processed import TokenizeParams, load_processed
from tasks.data.steps import fetch_archive, submit_shard, tokenize_reviews, tokenize_shard
from tasks.data.tokenize import decode_chunk
from tests.imdb_fixtures import mtimes, run_in_flow

pytestmark = pytest.mark.usefixtures("prefect_server")

PARAMS = TokenizeParams(vocab_size=60, validation_fraction=0.2)


def test_fetch_then_tokenize_and_a_second_call_reuses_the_folder(
    small_archive: Path, tmp_path: Path
) -> None:
    # Given the small archive as a local source, pinned by its checksum
    sha256 = file_sha256(small_archive)

    # When it is fetched and tokenised by the tasks
    archive = run_in_flow(fetch_archive, str(small_archive), tmp_path / "raw", sha256)
    data = run_in_flow(
        tokenize_reviews, archive.path, archive.sha256, tmp_path / "processed", PARAMS
    )

    # Then the local archive was verified in place, not copied
    assert (archive.path, archive.sha256, archive.downloaded) == (small_archive, sha256, False)
    assert archive.size == small_archive.stat().st_size
    assert not (tmp_path / "raw").exists()
    # And the data is a complete folder named by its fingerprint, with its counts published
    assert data.path.parent == tmp_path / "processed"
    assert load_processed(data.path) == data
    assert data.counts["test"] == {"rows": 80, "pos": 40, "neg": 40, "movies": 20}
    summary = Artifact.get("tokenized-data")
    assert summary is not None and data.fingerprint in str(summary.data)

    # When the same archive is tokenised again with the same parameters
    before = mtimes(data.path)
    again = run_in_flow(
        tokenize_reviews, archive.path, archive.sha256, tmp_path / "processed", PARAMS
    )

    # Then the same folder is returned and none of its files was rewritten
    assert again == data
    assert mtimes(data.path) == before
    assert [p.name for p in (tmp_path / "processed").iterdir()] == [data.path.name]


def test_fetch_archive_with_the_wrong_checksum_fails(small_archive: Path, tmp_path: Path) -> None:
    # Given a checksum the archive does not have (no retry: it would fail the same way)
    once = fetch_archive.with_options(retries=0)

    # When / then the task fails, naming the mismatch
    with pytest.raises(FetchError, match="checksum mismatch"):
        run_in_flow(once, str(small_archive), tmp_path / "raw", "ab" * 32)


def test_tokenize_shard_run_and_submitted_decodes_like_decode_chunk() -> None:
    # Given review bodies, one of them with a byte that is not UTF-8
    bodies = [b"A great film!<br /><br />Loved it.", b"awful \xff plot", b""]
    expected = decode_chunk(bodies)

    # When the shard task runs on them as one Arrow array, and when submitted by submit_shard
    direct = run_in_flow(tokenize_shard, pa.array(bodies, pa.large_binary()))
    submitted = run_in_flow(lambda: submit_shard(bodies).result())

    # Then both give decode_chunk's texts, tokens and undecodable byte count
    for chunk in (direct, submitted):
        assert chunk.texts.equals(expected.texts)
        assert chunk.words.equals(expected.words)
        assert chunk.offsets.tolist() == expected.offsets.tolist()
        assert chunk.local_ids.tolist() == expected.local_ids.tolist()
        assert chunk.bad_bytes == expected.bad_bytes == 1
