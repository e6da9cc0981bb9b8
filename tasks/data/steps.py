"""Prefect tasks of the data stage: thin wrappers adding retries, logging and artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger

from tasks.data import fetch, tokenize
from tasks.data.processed import ProcessedData, TokenizeParams

if TYPE_CHECKING:
    from tasks.data.accepted import AcceptedFile


@task(name="fetch_archive", retries=1, retry_delay_seconds=10)
def fetch_archive(source: str, raw_dir: Path, sha256: str | None) -> fetch.FetchedArchive:
    """Download (or locate) and verify the IMDB archive."""
    logger = get_run_logger()
    archive = fetch.fetch(source, raw_dir, sha256, log=logger.info)
    how = "downloaded" if archive.downloaded else "verified"
    logger.info(
        "%s %s (%s bytes, sha256 %s)", how, archive.path, f"{archive.size:,}", archive.sha256
    )
    return archive


# No Prefect result cache: the output folder, named by the fingerprint of the archive checksum,
# tokenizer and parameters, is the cache. It is reused only while its manifest verifies.
@task(name="tokenize_reviews", cache_policy=NO_CACHE)
def tokenize_reviews(
    archive_path: Path,
    archive_sha256: str,
    processed_root: Path,
    params: TokenizeParams,
    incoming: Sequence[AcceptedFile] = (),
) -> ProcessedData:
    """Tokenise the archive (and accepted incoming reviews) into parquet splits (an intact
    folder of the same fingerprint is reused, and the log says so)."""
    logger = get_run_logger()
    data = tokenize.tokenize_archive(
        archive_path,
        archive_sha256,
        processed_root,
        params,
        logger.info,
        warn=logger.warning,
        incoming=incoming,
    )
    publish_data_summary(data)
    return data


# One shard of reviews, as mapped on a Dask runner by `tokenize_archive(submit=submit_shard)`.
@task(name="tokenize_shard", cache_policy=NO_CACHE, persist_result=False)
def tokenize_shard(bodies: pa.LargeBinaryArray) -> tokenize.TokenChunk:
    """Decode and tokenise one shard of review bodies."""
    return tokenize.decode_chunk(bodies.to_pylist())


def submit_shard(bodies: list[bytes]) -> PrefectFuture[tokenize.TokenChunk]:
    """`tokenize_shard.submit` on the flow's task runner, the bodies packed in one Arrow array:
    Prefect and Dask walk and hash a list argument item by item (seconds for 50,000 reviews)."""
    return tokenize_shard.submit(pa.array(bodies, pa.large_binary()))


def publish_data_summary(data: ProcessedData) -> None:
    """Markdown artifact with the rows per split of the tokenised data."""
    rows = "\n".join(
        f"| {split} | {c['rows']:,} | {c['pos']:,} | {c['neg']:,} | {c['movies']:,} |"
        for split, c in data.counts.items()
    )
    create_markdown_artifact(
        key="tokenized-data",
        markdown=(
            f"## Tokenised data `{data.fingerprint}`\n\n`{data.path}`\n\n"
            f"Accepted incoming files: {len(data.incoming)}\n\n"
            "| split | rows | pos | neg | movies |\n|---|---|---|---|---|\n" + rows
        ),
        description="Rows per split of the tokenised IMDB data",
    )
