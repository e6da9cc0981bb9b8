"""Batch scoring: review files (.txt, .jsonl, .csv, .parquet) to parquet with one model load.

Every output row carries the review's id, the sha256 of its text, the probability and label,
and the model (run id) and tokenised data (fingerprint) that scored it. `score_waiting` is the
nightly's inbox: files dropped in a `to-score` folder are scored by the champion and moved.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.atomic import atomic_write, atomic_write_text, fsync_dir
from tasks.data.review_files import LENIENT, is_review_file, read_reviews
from tasks.serving.champion import CHAMPION, ModelInfo, current_champion, model_info
from tasks.serving.exported import ExportedModel
from tasks.serving.saved_model import is_saved_model

if TYPE_CHECKING:
    from tasks.serving.predict import Predictor

BATCH = 2048  # texts per Predictor.predict call (it batches them again for the model)
UNKNOWN = "unknown"  # the data version of an export whose model card does not say it
DONE = "done"
FAILED = "failed"

SCORE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text_sha256", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("data_version", pa.string(), nullable=False),
    ]
)


def resolve_model(model: str | Path, artifacts_dir: Path) -> ModelInfo:
    """`"champion"` (artifacts_dir/models/champion) or an exported folder, or a file in one:
    the folder (symlinks resolved) with its run id and data version (from its model card)."""
    if isinstance(model, str) and model == CHAMPION:
        models = artifacts_dir / "models"
        folder = current_champion(models)
        if folder is None:
            raise FileNotFoundError(
                f"no champion model yet in {models}: train one with the nightly or pass "
                "--model PATH"
            )
    else:
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model {path} does not exist")
        folder = (path if path.is_dir() else path.parent).resolve()
        if path.is_dir() and is_saved_model(path):  # scored by the SavedModel, named by its export
            return replace(model_info(folder.parent), path=folder)
    missing = [p.name for p in ExportedModel(folder).missing()]
    if missing:
        raise FileNotFoundError(
            f"{model} is not an exported model folder (artifacts/models/<run_id>): "
            f"{', '.join(missing)} not found in {folder}"
        )
    return model_info(folder)


def read_score_input(path: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a review file (`review_files.LENIENT`); a review without an id gets its
    line (.txt, .jsonl) or row (.csv, .parquet) number from 1. Blank lines of a .txt are
    skipped (and keep their numbers)."""
    table = read_reviews(path, LENIENT)
    suffix = path.suffix.lower()
    numbers = table.column("line").to_pylist() if suffix != ".csv" else range(1, len(table) + 1)
    ids: list[str] = []
    texts: list[str] = []
    for number, review_id, review in zip(
        numbers, table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True
    ):
        if suffix == ".txt" and not review.strip():
            continue
        ids.append(review_id or str(number))
        texts.append(review)
    return ids, texts


def score_texts(
    predictor: Predictor,
    model: ModelInfo,
    ids: Sequence[str],
    texts: Sequence[str],
    batch: int = BATCH,
) -> pa.Table:
    """The SCORE_SCHEMA table of `texts`, scored `batch` at a time by one loaded model."""
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
    parts = [predictor.predict(list(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    prob = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    labels = np.where(prob >= 0.5, "positive", "negative")
    n = len(texts)
    return pa.table(
        {
            "id": pa.array(list(ids), pa.string()),
            "text_sha256": pa.array(
                [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts], pa.string()
            ),
            "probability": pa.array(prob, pa.float64()),
            "label": pa.array(labels.tolist(), pa.string()),
            "model_id": pa.array([model.run_id] * n, pa.string()),
            "data_version": pa.array([model.data_version or UNKNOWN] * n, pa.string()),
        },
        schema=SCORE_SCHEMA,
    )


def write_scores(table: pa.Table, output: Path) -> Path:
    """`table` as a parquet file, written atomically (a reader sees the old file or the new)."""
    return atomic_write(output, lambda tmp: pq.write_table(table, tmp))


def _score_file(
    predictor: Predictor,
    model: ModelInfo,
    source: Path,
    output: Path,
    read: tuple[list[str], list[str]] | None = None,
) -> dict:
    """Score `source` (or its already `read` ids and texts) to `output`; a summary line."""
    started = time.perf_counter()
    ids, texts = read if read is not None else read_score_input(source)
    table = score_texts(predictor, model, ids, texts)
    write_scores(table, output)
    return {
        "input": str(source),
        "output": str(output),
        "rows": table.num_rows,
        "positive": int(np.sum(table.column("label").to_numpy(zero_copy_only=False) == "positive")),
        "seconds": round(time.perf_counter() - started, 3),
    }


def input_files(folder: Path) -> list[Path]:
    """The review files directly in `folder` (not hidden, supported type), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and is_review_file(p, LENIENT) and not p.name.startswith(".")
    )


def score_path(input: Path, model: ModelInfo, output: Path) -> dict:
    """Score a file (to the parquet file `output`) or every review file directly in a folder
    (to `output/<stem>.parquet` each); the model is loaded once. Returns a summary."""
    from tasks.serving.predict import Predictor

    started = time.perf_counter()
    if not input.exists():
        raise FileNotFoundError(f"input {input} does not exist")
    first: tuple[list[str], list[str]] | None = None
    if input.is_dir():
        sources = input_files(input)
        if not sources:
            raise ValueError(f"{input} holds no review files ({', '.join(LENIENT.suffixes)})")
        if output.resolve() == input.resolve():
            raise ValueError(f"output folder {output} is the input folder: choose another")
        targets = [output / f"{s.stem}.parquet" for s in sources]
        stems: dict[str, Path] = {}
        for source in sources:
            if source.stem in stems:
                raise ValueError(
                    f"{stems[source.stem].name} and {source.name} would both be scored to "
                    f"{source.stem}.parquet: rename one"
                )
            stems[source.stem] = source
    else:
        if output.resolve() == input.resolve():
            raise ValueError(f"output {output} is the input file: choose another")
        sources, targets = [input], [output]
        first = read_score_input(input)  # a bad file is named before the model loads
    predictor = Predictor(model.path)
    files = [
        _score_file(predictor, model, source, target, first if i == 0 else None)
        for i, (source, target) in enumerate(zip(sources, targets, strict=True))
    ]
    seconds = time.perf_counter() - started
    rows = sum(f["rows"] for f in files)
    return {
        "model_id": model.run_id,
        "data_version": model.data_version or UNKNOWN,
        "model": str(model.path),
        "files": files,
        "rows": rows,
        "positive": sum(f["positive"] for f in files),
        "seconds": round(seconds, 3),
        "reviews_per_second": round(rows / seconds, 1) if seconds > 0 else None,
    }


def default_output(input: Path) -> Path:
    """`<input without suffix>.scored.parquet` beside a file, `<folder>-scored/` beside a
    folder."""
    full = input.resolve()
    if input.is_dir():
        return full.with_name(f"{full.name}-scored")
    return full.with_name(f"{full.stem}.scored.parquet")


def score_input(input: Path, model: str | Path, output: Path | None, artifacts_dir: Path) -> dict:
    """Score a review file (or every review file in a folder) to parquet with one model load:
    what `imdb-pipeline score` runs (plain Python) and the `score_reviews` task wraps.

    `model` is `"champion"` or an exported folder (see `resolve_model`); `output` defaults to
    `default_output(input)`. Returns `score_path`'s summary with the `output` path.
    """
    if not input.exists():  # said before a missing champion would be
        raise FileNotFoundError(f"input {input} does not exist")
    scoring = resolve_model(model, artifacts_dir)
    if output is None:
        output = default_output(input)
    summary = score_path(input, scoring, output)
    return {**summary, "output": str(output)}


def describe(summary: dict) -> str:
    """One line on a `score_input` summary, as the log gives it."""
    return (
        f"scored {summary['rows']} reviews ({summary['positive']} positive) with "
        f"{summary['model_id']} in {summary['seconds']:.1f} s: {summary['output']}"
    )


def _free_name(folder: Path, name: str) -> tuple[Path, int]:
    """`folder/name`, or `folder/name.<n>` with the smallest n >= 1 not taken; and n (0 if none)."""
    n = 0
    while (folder / (f"{name}.{n}" if n else name)).exists():
        n += 1
    return folder / (f"{name}.{n}" if n else name), n


def _move(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, dest)  # same file system: one atomic step
    fsync_dir(dest.parent)
    fsync_dir(source.parent)


def score_waiting(
    to_score: Path,
    scored: Path,
    model: ModelInfo,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Score every review file waiting directly in `to_score` to
    `scored/<stem>.<model_id>.parquet`, then move it to `to_score/done/`.

    The output is written (atomically) before the move, so a crash between the two only scores
    the file again next time, replacing the output with an identical one. A name already in
    done/ gets `.<n>` there, and its output the same `.<n>` (an earlier output is never
    replaced by another file's); files waiting together with the same stem keep their suffix in
    the output name. A file that cannot be read goes to `to_score/failed/` with a
    `<name>.error.txt` beside it, and the others go on.
    """
    from tasks.serving.predict import Predictor

    if not to_score.is_dir():
        return []
    waiting = input_files(to_score)
    if not waiting:
        return []
    stems = [p.stem for p in waiting]
    predictor = Predictor(model.path)
    results = []
    for source in waiting:
        base = source.name if stems.count(source.stem) > 1 else source.stem
        done, n = _free_name(to_score / DONE, source.name)
        output = scored / f"{base}.{model.run_id}{f'.{n}' if n else ''}.parquet"
        try:
            read = read_score_input(source)
        except (ValueError, OSError) as exc:  # unreadable input: set aside, go on
            failed, _ = _free_name(to_score / FAILED, source.name)
            atomic_write_text(failed.with_name(failed.name + ".error.txt"), f"{exc}\n")
            _move(source, failed)
            log(f"could not score {source.name}: {exc}; moved to {failed}")
            results.append(
                {"input": source.name, "moved_to": str(failed), "error": str(exc), "rows": 0}
            )
            continue
        summary = _score_file(predictor, model, source, output, read)
        _move(source, done)
        log(f"scored {source.name}: {summary['rows']} reviews to {output}")
        results.append({**summary, "input": source.name, "moved_to": str(done)})
    return results
