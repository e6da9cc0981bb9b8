"""Prefect task of the ingest stage: a thin wrapper adding logging, alerts and an artifact."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from tasks.config import PipelineConfig
from tasks.core.notify import notify
from tasks.data.processed import ProcessedData
from tasks.ingest import batch
from tasks.ingest.ingest import IngestReport, Judge, ingest_folder
from tasks.ingest.sources import fetch_incoming

Scorer = tuple[str, Callable[[list[str]], np.ndarray]]  # (champion run id, its predict)


def batch_judge(
    config: PipelineConfig, base: ProcessedData, champion: Scorer | None
) -> Judge | None:
    """The batch checks of a new file against the archive `base` and the `champion` (None:
    its agreement check is skipped), or None when `batch_checks` is off. The archive's figures
    are measured once, when the first file is judged."""
    if not config.batch_checks:
        return None
    thresholds = batch.Thresholds(
        alpha=config.batch_alpha,
        max_label_shift=config.batch_max_label_shift,
        max_agreement_drop=config.batch_max_agreement_drop,
        max_oov_increase=config.batch_max_oov_increase,
    )
    measured: list[tuple[batch.Reference, list[str]]] = []
    predict = champion[1] if champion is not None else None

    def judge(rows: pa.Table) -> list[batch.Check]:
        if not measured:
            vocabulary = base.vocabulary()
            train = pq.read_table(base.split_path("train"), columns=["label"])
            validation = pq.read_table(base.split_path("validation"), columns=["text", "label"])
            reference = batch.archive_reference(
                np.asarray(train.column("label")),
                validation.column("text").to_pylist(),
                np.asarray(validation.column("label")),
                vocabulary,
                predict,
                champion[0] if champion is not None else None,
            )
            measured.append((reference, vocabulary))
        reference, vocabulary = measured[0]
        return batch.check_batch(
            rows.column("text"),
            np.asarray(rows.column("label")),
            vocabulary=vocabulary,
            predict=predict,
            reference=reference,
            thresholds=thresholds,
        )

    return judge


# No Prefect result cache: the ledger of ingested files (their summaries) is the cache.
@task(name="ingest_incoming", cache_policy=NO_CACHE)
def ingest_incoming(
    config: PipelineConfig,
    reference: Callable[[], tuple[frozenset[str], frozenset[str]]],
    judge: Judge | None = None,
) -> IngestReport:
    """Fetch `config.incoming_sources` into the incoming folder, then ingest every new file
    there: accepted rows into data/accepted/, held ones (failing a `judge` batch check) into
    data/held/, rejected ones and unreadable files into data/quarantine/. `reference()` gives
    the test split's text keys and the archive's labelled training reviews'
    (`validate.reference_keys`); it is called only if a file is new. A newly held file is a
    `held` alert."""
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
        judge=judge,
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
    if not config.batch_checks and new:
        logger.info("batch checks are off (batch_checks = false): new files were not judged")
    for f in report.files:
        if f.status == "held" and not f.waiting:
            failed = [c for c in f.checks if not c["passed"]]
            notify(
                config.notify_url,
                "held",
                f"{f.name} is held: {'; '.join(c['detail'] for c in failed)}. Release or reject "
                "it with `imdb-pipeline incoming release|reject`",
                flow="nightly",
                flow_run_id=flow_run.get_id(),
                file=f.name,
                sha256=f.sha256,
                rows=f.held_rows,
                failed_checks=failed,
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
                "held": f.held_rows,
                "rejected": f.rejected_rows,
                "failed checks": "; ".join(c["detail"] for c in f.checks if not c["passed"]),
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
