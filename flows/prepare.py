"""prepare: fetch the IMDB archive and tokenise it to parquet."""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig
from tasks.steps import fetch_archive, tokenize_reviews
from tasks.tokenize import ProcessedData, TokenizeParams, load_processed


def prepare_data(config: PipelineConfig) -> ProcessedData:
    """Fetch, then tokenise (reusing the cache only while its files are intact)."""
    data_dir = config.data_dir.resolve()
    archive = fetch_archive(config.source, data_dir / "raw", config.expected_sha256())
    params = TokenizeParams(config.vocab_size, config.validation_fraction, config.seed)
    tokenize = tokenize_reviews.with_options(result_storage=data_dir / "cache")
    data = tokenize(archive.path, archive.sha256, data_dir / "processed", params)
    if load_processed(data.path) is None:
        # Prefect returns a cached result even when its files were deleted or damaged since.
        get_run_logger().warning(
            "cached tokenised data %s is gone or damaged; rebuilding", data.path
        )
        data = tokenize.with_options(refresh_cache=True)(
            archive.path, archive.sha256, data_dir / "processed", params
        )
    return data


@flow(name="prepare", log_prints=True)
def prepare(config: PipelineConfig = PipelineConfig()) -> dict:
    """Fetch the archive and tokenise it; returns a JSON-able summary."""
    data = prepare_data(config)
    return {
        "flow": "prepare",
        "data_path": str(data.path),
        "fingerprint": data.fingerprint,
        "counts": data.counts,
        "undecodable_bytes": data.undecodable_bytes,
    }
