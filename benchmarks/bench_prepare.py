"""Archive -> parquet: the pipeline's tokenize step vs tarfile + keras TextVectorization.

Each side runs in its own process on the real archive; prints one JSON line with both times,
the speed-up and each side's peak RSS.  The Dask columns prepare the same archive with its
shards mapped as Prefect tasks on a local Dask cluster of 1 and of 2 worker processes (time
to start the cluster, time to tokenise on it, their sum against the default path), and check
that the files written are byte for byte the default path's.
Usage: python benchmarks/bench_prepare.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    REAL_ARCHIVE,
    REAL_SHA256,
    ROOT,
    peak_rss_mb,
    run_isolated,
)

VOCAB = 20_000
LENGTH = 200


def reference() -> dict:
    """The plain-Keras way: read every review with tarfile (the 50,000 unlabelled ones too, as
    the pipeline does), adapt TextVectorization on train and apply it to every review."""
    import re
    import tarfile

    import keras
    import numpy as np

    t0 = time.perf_counter()
    pattern = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/\d+_\d+\.txt$")
    texts: dict[str, list[str]] = {"train": [], "test": [], "unsup": []}
    with tarfile.open(REAL_ARCHIVE, "r:gz") as tar:
        for member in tar:
            m = pattern.match(member.name)
            if m:
                body = tar.extractfile(member).read().decode("utf-8", "replace")
                texts["unsup" if m.group(2) == "unsup" else m.group(1)].append(body)
    read_s = time.perf_counter() - t0
    layer = keras.layers.TextVectorization(max_tokens=VOCAB, output_sequence_length=LENGTH)
    layer.adapt(texts["train"], batch_size=1024)
    rows = sum(len(np.asarray(layer(texts[split]))) for split in ("train", "test", "unsup"))
    total = time.perf_counter() - t0
    return {
        "seconds": total,
        "read_seconds": read_s,
        "rows": int(rows),
        "peak_rss_mb": peak_rss_mb(),
    }


def pipeline() -> dict:
    """The pipeline's pure tokenize step, archive to parquet in a temporary folder."""
    # Imports happen before the clock on both sides (the reference imports keras first).
    from tasks.data.processed import TokenizeParams
    from tasks.data.tokenize import tokenize_archive

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = tokenize_archive(
            REAL_ARCHIVE, REAL_SHA256, Path(tmp), TokenizeParams(vocab_size=VOCAB)
        )
        seconds = time.perf_counter() - t0
        files = _file_digests(data.path)
    rows = sum(c["rows"] for c in data.counts.values())
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb(), "files": files}


def pipeline_dask(workers: int) -> dict:
    """The `prepare` flow's Dask path: shards as Prefect tasks on a local cluster of processes."""
    from distributed import Client, LocalCluster
    from prefect import flow

    from flows.shared import dask_task_runner, tokenize_on_dask
    from tasks.config import PipelineConfig
    from tasks.data.processed import TokenizeParams

    @flow(name="warm-up")
    def warm_up() -> None:
        """Starts Prefect's local server, outside the timings."""

    warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # The cluster `--task-runner dask` starts, started here to time it apart.
        cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1)
        with cluster, Client(cluster) as client:
            client.wait_for_workers(workers)
            started = time.perf_counter() - t0
            config = PipelineConfig(task_runner="dask", dask_address=cluster.scheduler_address)
            run = tokenize_on_dask.with_options(task_runner=dask_task_runner(config))
            data = run(REAL_ARCHIVE, REAL_SHA256, Path(tmp), TokenizeParams(vocab_size=VOCAB))
            seconds = time.perf_counter() - t0
        files = _file_digests(data.path)
    rows = sum(c["rows"] for c in data.counts.values())
    return {
        "seconds": seconds,
        "cluster_start_seconds": started,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
        "files": files,
    }


def _file_digests(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())["files"]


def main() -> None:
    if len(sys.argv) > 1:  # child process: run one side
        sides = {"reference": reference, "pipeline": pipeline}
        if sys.argv[1] == "dask":
            print(json.dumps(pipeline_dask(int(sys.argv[2]))))
        else:
            print(json.dumps(sides[sys.argv[1]]()))
        return
    if not REAL_ARCHIVE.exists():
        sys.exit(f"real archive not found at {REAL_ARCHIVE} (set IMDB_SOURCE)")
    script = Path(__file__)
    os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    ref = run_isolated(script, "reference")
    ours = run_isolated(script, "pipeline")
    dask = {n: run_isolated(script, "dask", str(n)) for n in (1, 2)}
    result = {
        "benchmark": "prepare",
        "archive": str(REAL_ARCHIVE),
        "reference_keras_textvectorization_s": round(ref["seconds"], 2),
        "reference_read_s": round(ref["read_seconds"], 2),
        "pipeline_s": round(ours["seconds"], 2),
        "speedup": round(ref["seconds"] / ours["seconds"], 2),
        "reference_peak_rss_mb": round(ref["peak_rss_mb"]),
        "pipeline_peak_rss_mb": round(ours["peak_rss_mb"]),
        "rows": ours["rows"],
    }
    for n, side in dask.items():
        name = f"dask_{n}_worker{'s' if n > 1 else ''}"
        result[f"{name}_s"] = round(side["seconds"], 2)
        result[f"{name}_cluster_start_s"] = round(side["cluster_start_seconds"], 2)
        result[f"{name}_speedup_vs_pipeline"] = round(ours["seconds"] / side["seconds"], 2)
        result[f"{name}_client_peak_rss_mb"] = round(side["peak_rss_mb"])
        result[f"{name}_identical_output"] = side["files"] == ours["files"]
    result["dask_2_vs_1_worker_speedup"] = round(dask[1]["seconds"] / dask[2]["seconds"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
