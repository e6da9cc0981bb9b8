"""tokenize_reviews: IMDB archive -> tokenised parquet splits in data/processed/<fp>/."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# pyarrow imports pandas lazily on its first pa.array(); without this, that 0.3 s import would
# happen in a tokenising thread, holding the GIL while the archive is being read.
import pandas  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.core.atomic import atomic_dir, atomic_write_text, file_record, reuse_verified
from tasks.core.memory import reuse_freed_memory
from tasks.data import text
from tasks.data.processed import (
    LABELLED,
    MANIFEST,
    SPLITS,
    VOCABULARY,
    ProcessedData,
    TokenizeParams,
    fingerprint,
    load_processed,
)
from tasks.data.reviews import (
    DataError,
    RawReviews,
    add_reviews,
    assign_validation,
    read_reviews,
    stable_validation,
)

if TYPE_CHECKING:
    from tasks.data.accepted import AcceptedFile

METADATA_KEY = b"imdb_pipeline"
_THREADS = min(os.cpu_count() or 1, 8)
CHUNK = 1024  # reviews per decode/tokenise chunk in a local thread
# Reviews per chunk handed to `submit`: each is a task of fixed cost (a Prefect task run, a Dask
# round trip). On the real archive with 2 local Dask workers: 13 s in shards of 1024, 6 s of 4096.
SHARD = 4096

SCHEMA = pa.schema(
    [
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("movie_id", pa.string()),
        pa.field("rating", pa.int8()),  # null in the unlabelled split
        pa.field("label", pa.int8()),
        pa.field("split", pa.string(), nullable=False),
        pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)

log = logging.getLogger(__name__)


def _table(
    raw: RawReviews, idx: np.ndarray, split: str, texts: pa.ChunkedArray, ids: pa.ChunkedArray
) -> pa.Table:
    # texts and ids are in archive (arrival) order; idx is in canonical order.
    take = pa.array(raw.arrival[idx])
    return pa.table(
        {
            "review_id": pa.array([raw.review_id[i] for i in idx], pa.string()),
            "movie_id": pa.array([raw.movie_id[i] for i in idx], pa.string()),
            "rating": pa.array(raw.rating[idx], pa.int8(), mask=raw.rating[idx] < 1),
            "label": pa.array(raw.label[idx], pa.int8(), mask=raw.label[idx] < 0),
            "split": pa.array([split] * len(idx), pa.string()),
            "token_ids": ids.take(take),
            "text": texts.take(take),
        },
        schema=SCHEMA,
    )


@dataclass(frozen=True)
class TokenChunk:
    """A chunk of reviews (archive order): texts, and tokens as ids into a chunk dictionary.

    Plain Arrow and NumPy arrays, so it pickles: a chunk may be made in another process.
    """

    texts: pa.StringArray
    offsets: np.ndarray  # token-list offsets per review
    local_ids: np.ndarray  # int32 index into `words` for every token
    words: pa.StringArray  # the chunk's distinct tokens
    bad_bytes: int

    def train_counts(self, rows: np.ndarray) -> np.ndarray:
        """How often each of `words` occurs in the chunk's reviews selected by `rows`."""
        in_rows = np.repeat(rows, np.diff(self.offsets))
        return np.bincount(self.local_ids[in_rows], minlength=len(self.words))

    def encode(self, vocabulary: list[str]) -> pa.ListArray:
        lookup = np.asarray(text.vocabulary_ids(self.words, vocabulary))
        ids = lookup[self.local_ids] if len(self.local_ids) else np.zeros(0, np.int32)
        return pa.ListArray.from_arrays(pa.array(self.offsets), pa.array(ids, pa.int32()))


def decode_chunk(bodies: list[bytes]) -> TokenChunk:
    """Decode and tokenise a chunk; the dictionary keeps later counting and encoding cheap."""
    texts, bad_bytes = text.decode_utf8(bodies)
    tokens = text.tokenize(texts, threads=1)
    encoded = pc.dictionary_encode(tokens.flatten())
    offsets = np.asarray(tokens.offsets, dtype=np.int32) - tokens.offsets[0].as_py()
    return TokenChunk(
        texts, offsets, np.asarray(encoded.indices, dtype=np.int32), encoded.dictionary, bad_bytes
    )


def tokenize_archive(
    archive: Path,
    source_sha256: str,
    processed_root: Path,
    params: TokenizeParams,
    progress: Callable[[str], None] = log.info,
    submit: Callable[[list[bytes]], Any] | None = None,
    warn: Callable[[str], None] = log.warning,
    incoming: Sequence[AcceptedFile] = (),
) -> ProcessedData:
    """Archive (+ accepted incoming reviews) -> data/processed/<fingerprint>/ (reused when
    already complete and intact).

    Review bodies are decoded and tokenised while the archive is read: `CHUNK` at a time in
    local threads, or `SHARD` at a time by `submit(bodies)`, which returns an object whose
    `.result()` is `decode_chunk(bodies)` (a Prefect task's future on a Dask runner, say). The
    vocabulary is merged exactly from the chunks' counts, so the output does not depend on
    how or where the chunks ran.
    `incoming` rows join the archive's training reviews, each in train or validation by
    `reviews.stable_validation`, so a row keeps its split in every later data version.
    """
    fp = fingerprint(source_sha256, params, [f.sha256 for f in incoming])
    final = processed_root / fp
    existing = reuse_verified(final, load_processed, "tokenised data", progress)
    if existing is not None:
        return existing
    with reuse_freed_memory():  # the chunks make many large short-lived temporaries
        return _build(archive, source_sha256, final, params, progress, submit, warn, incoming)


def _build(
    archive: Path,
    source_sha256: str,
    final: Path,
    params: TokenizeParams,
    progress: Callable[[str], None],
    submit: Callable[[list[bytes]], Any] | None,
    warn: Callable[[str], None],
    incoming: Sequence[AcceptedFile],
) -> ProcessedData:
    """Tokenise the archive into `final` (see `tokenize_archive`)."""
    fp = final.name
    t0 = time.perf_counter()
    # Decoding and tokenising run in worker threads (or wherever `submit` sends them) while the
    # archive is still being read.
    with ThreadPoolExecutor(_THREADS) as pool:
        run = submit or (lambda bodies: pool.submit(decode_chunk, bodies))
        futures: list[Any] = []
        chunk = CHUNK if submit is None else SHARD
        raw = read_reviews(archive, lambda b: futures.append(run(b)), chunk=chunk, warn=warn)
        archive_rows = len(raw.split)
        for f in incoming:
            added = pq.read_table(f.rows_path, columns=["id", "text", "label", "movie", "rating"])
            bodies = [t.encode("utf-8") for t in added.column("text").to_pylist()]
            for start in range(0, len(bodies), chunk):
                futures.append(run(bodies[start : start + chunk]))
            raw = add_reviews(raw, added, f.sha256)
        progress(f"read {len(raw.split):,} reviews in {time.perf_counter() - t0:.1f}s")
        chunks: list[TokenChunk] = [f.result() for f in futures]
    bad_bytes = sum(c.bad_bytes for c in chunks)
    if bad_bytes:
        progress(f"replaced {bad_bytes} undecodable bytes with U+FFFD")

    split = np.array(raw.split, dtype=object)
    train_idx = np.flatnonzero(split[:archive_rows] == "train")
    in_val = assign_validation(
        [raw.movie_id[i] for i in train_idx], params.validation_fraction, params.seed
    )
    split[train_idx[in_val]] = "validation"
    if len(split) > archive_rows:  # incoming rows: their movie's split, else a stable hash
        archive_split = {raw.movie_id[i]: split[i] for i in train_idx}
        new = range(archive_rows, len(split))
        split[archive_rows:] = stable_validation(
            [raw.review_id[i] for i in new],
            [raw.movie_id[i] for i in new],
            archive_split,
            params.validation_fraction,
        )
    rows = {s: np.flatnonzero(split == s) for s in SPLITS}
    empty = [s for s in LABELLED if len(rows[s]) == 0]
    if empty:
        raise DataError(f"{archive}: split {', '.join(empty)} would be empty")

    # Vocabulary from the training rows' token counts, summed over the chunks' dictionaries.
    is_train_row = np.zeros(len(raw.split), dtype=bool)
    is_train_row[raw.arrival[rows["train"]]] = True
    starts = np.cumsum([0] + [len(c.texts) for c in chunks])
    bounds = zip(chunks, starts[:-1], starts[1:], strict=True)
    counts = [c.train_counts(is_train_row[a:b]) for c, a, b in bounds]
    vocabulary = text.vocabulary_from_counts(
        pa.concat_arrays([c.words for c in chunks]), np.concatenate(counts), params.vocab_size
    )
    if len(vocabulary) < params.vocab_size:
        progress(f"training text has only {len(vocabulary) - 2:,} distinct tokens")
    # Kept in archive order, chunk by chunk: each split's table takes its rows once, at the end
    # (a take from the chunks, without concatenating them first).
    with ThreadPoolExecutor(_THREADS) as pool:
        ids = pa.chunked_array(
            pool.map(lambda c: c.encode(vocabulary), chunks), SCHEMA.field("token_ids").type
        )
    texts = pa.chunked_array([c.texts for c in chunks], pa.string())
    progress(f"tokenised in {time.perf_counter() - t0:.1f}s, vocabulary {len(vocabulary):,}")

    meta = {
        "fingerprint": fp,
        "source_sha256": source_sha256,
        "tokenizer_version": text.TOKENIZER_VERSION,
        "params": params.model_dump(),
    }
    if incoming:
        meta["incoming"] = sorted(f.sha256 for f in incoming)
    counts = {
        s: {
            "rows": int(len(rows[s])),
            "pos": int((raw.label[rows[s]] == 1).sum()),
            "neg": int((raw.label[rows[s]] == 0).sum()),
            "movies": len({raw.movie_id[i] for i in rows[s]} - {None}),
        }
        for s in SPLITS
    }
    # Built in a temporary sibling folder and renamed: readers never see a partial one, and a
    # damaged folder of the same fingerprint is replaced whole.
    with atomic_dir(final) as tmp:
        (tmp / VOCABULARY).write_text("\n".join(vocabulary) + "\n", encoding="utf-8")

        def write(split: str) -> tuple[str, dict]:  # take, encode and hash free the GIL
            path = tmp / f"{split}.parquet"
            _write_split(_table(raw, rows[split], split, texts, ids), path, meta)
            return path.name, file_record(path)

        with ThreadPoolExecutor(_THREADS) as pool:
            files = dict(pool.map(write, SPLITS))
        files[VOCABULARY] = file_record(tmp / VOCABULARY)
        files = dict(sorted(files.items()))
        manifest = {**meta, "counts": counts, "undecodable_bytes": bad_bytes, "files": files}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
    progress(f"wrote {final} in {time.perf_counter() - t0:.1f}s")
    return ProcessedData(final, fp, counts, bad_bytes, tuple(meta.get("incoming", ())))


def _write_split(table: pa.Table, path: Path, meta: dict) -> None:
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
    pq.write_table(table, path, compression="zstd")
