"""Prefect task of the ingest stage: a thin wrapper adding logging and an artifact."""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig
from tasks.ingest.ingest import IngestReport, ingest_folder
from tasks.ingest.sources import fetch_incoming


# No Prefect result cache: the ledger of ingested files (their summaries) is the cache.
@task(name="ingest_incoming", cache_policy=NO_CACHE)
def ingest_incoming(
    config: PipelineConfig, reference: Callable[[], tuple[frozenset[str], frozenset[str]]]
) -> IngestReport:
    """Fetch `config.incoming_sources` into the incoming folder, then ingest every new file
    there: accepted rows into data/accepted/, rejected ones and unreadable files into
    data/quarantine/. `reference()` gives the test split's text keys and the archive's labelled
    training reviews' (`validate.reference_keys`); it is called only if a file is new."""
    logger = get_run_logger()
    incoming = config.incoming_path
    incoming.mkdir(parents=True, exist_ok=True)
    if config.incoming_sources:
        # A source that cannot be fetched tonight (server down, wrong checksum) is named and
        # skipped: the night goes on with the rest, and the next one tries it again.
        fetch_incoming(
            config.incoming_sources,
            incoming,
            log=logger.info,
            on_error=lambda exc: logger.warning("incoming source not fetched: %s", exc),
        )
    report = ingest_folder(
        incoming,
        config.data_dir.resolve(),
        reference=reference,
        max_chars=config.max_review_chars,
        progress=logger.info,
        warn=logger.warning,
    )
    new = [f for f in report.files if f.status != "already ingested"]
    logger.info(
        "%d incoming file(s), %d new; %d accepted file(s) in the data (%s rows)",
        len(report.files),
        len(new),
        len(report.accepted),
        f"{sum(f.rows for f in report.accepted):,}",
    )
    publish_incoming_summary(report)
    return report


def publish_incoming_summary(report: IngestReport) -> None:
    """Table artifact: one row per incoming file and what the ingest did with it."""
    create_table_artifact(
        key="incoming-data",
        table=[
            {
                "file": f.name,
                "sha256": f.sha256[:12],
                "status": f.status,
                "accepted": f.accepted_rows,
                "rejected": f.rejected_rows,
                "reasons": ", ".join(f"{r} {n}" for r, n in f.reasons.items()),
                "error": f.error or "",
            }
            for f in report.files
        ],
        description=(
            f"Incoming labelled-review files; {len(report.accepted)} accepted file(s) "
            f"({sum(f.rows for f in report.accepted):,} rows) in the data"
        ),
    )
