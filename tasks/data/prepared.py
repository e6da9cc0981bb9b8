"""Whether `prepare` has anything to do, decided in plain Python before any Prefect start.

`imdb-pipeline prepare` asks `already_prepared` first: when the archive verifies where it is
(no download, no request) and the tokenised folder it would produce is complete and every file
matches its manifest, the command reports that data without a flow run. These are the checks
the flow's own steps make before they reuse the same files (`fetch.fetch`, then
`load_processed`), so anything missing, changed or damaged still goes through the flow.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.config import PipelineConfig
from tasks.data import fetch
from tasks.data.processed import ProcessedData, TokenizeParams, fingerprint, load_processed
from tasks.layout import DataLayout


def already_prepared(
    config: PipelineConfig, log: Callable[[str], None] = lambda _: None
) -> ProcessedData | None:
    """The tokenised data `prepare(config)` would return, if it is already there and verifies
    for an archive that needs no download and verifies too; else None (the flow must run)."""
    layout = DataLayout(config.data_dir.resolve())
    archive = fetch.cached(config.source, layout.raw, config.expected_sha256(), log=log)
    if archive is None:
        return None
    params = TokenizeParams.from_config(config)
    data = load_processed(layout.processed / fingerprint(archive.sha256, params))
    if data is not None:
        log(
            f"verified {archive.path} ({archive.size:,} bytes, sha256 {archive.sha256}) and "
            f"the tokenised data {data.path} (every file matches its manifest)"
        )
    return data


def summary(data: ProcessedData) -> dict:
    """The JSON-able summary `prepare` returns."""
    return {
        "flow": "prepare",
        "data_path": str(data.path),
        "fingerprint": data.fingerprint,
        "counts": data.counts,
        "undecodable_bytes": data.undecodable_bytes,
    }
