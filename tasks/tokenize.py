"""tokenize_reviews: IMDB archive -> tokenised parquet splits in data/processed/<fp>/."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# pyarrow imports pandas lazily on its first pa.array(); without this, that 0.3 s import would
# happen in a tokenising thread, holding the GIL while the archive is being read.
import pandas  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import text
from tasks.archive import ArchiveError, iter_members
from tasks.atomic import atomic_write_text, file_sha256, fsync_dir
from tasks.memory import reuse_freed_memory

SPLITS = ("train", "validation", "test")
_REVIEW = re.compile(r"^aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_URLS = re.compile(r"^aclImdb/(train|test)/urls_(pos|neg)\.txt$")
_MOVIE = re.compile(r"(tt\d+)")
_REQUIRED = tuple(f"aclImdb/{s}/{lab}/" for s in ("train", "test") for lab in ("neg", "pos"))
METADATA_KEY = b"imdb_pipeline"
MANIFEST = "manifest.json"
_THREADS = min(os.cpu_count() or 1, 8)
CHUNK = 1024  # reviews per decode/tokenise chunk in a local thread
# Reviews per chunk handed to `submit`: each is a task of fixed cost (a Prefect task run, a Dask
# round trip). On the real archive with 2 local Dask workers: 13 s in shards of 1024, 6 s of 4096.
SHARD = 4096

SCHEMA = pa.schema(
    [
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("movie_id", pa.string()),
        pa.field("rating", pa.int8(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The archive's content cannot make a valid dataset; the message says what is wrong."""


@dataclass(frozen=True)
class TokenizeParams:
    """What the tokenised output depends on besides the archive (part of the fingerprint)."""

    vocab_size: int = 20_000
    validation_fraction: float = 0.1
    seed: int = 42

    def as_dict(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class ProcessedData:
    """A complete tokenised dataset folder."""

    path: Path
    fingerprint: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    undecodable_bytes: int = 0

    def split_path(self, split: str) -> Path:
        return self.path / f"{split}.parquet"

    @property
    def vocabulary_path(self) -> Path:
        return self.path / "vocab.txt"


def fingerprint(source_sha256: str, params: TokenizeParams) -> str:
    """Short digest of everything the output depends on."""
    key = {
        "source_sha256": source_sha256,
        "tokenizer_version": text.TOKENIZER_VERSION,
        "params": params.as_dict(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RawReviews:
    """Reviews as read from the archive, in a canonical order."""

    review_id: list[str]
    split: list[str]
    label: np.ndarray
    rating: np.ndarray
    movie_id: list[str | None]
    arrival: np.ndarray  # canonical row i was the arrival[i]-th review read


def read_reviews(
    archive: Path, on_chunk: Callable[[list[bytes]], None], chunk: int = 1024
) -> RawReviews:
    """Stream the labelled train/test reviews (and their movie urls) out of the archive.

    Review bodies go to `on_chunk`, `chunk` at a time in archive order, as they are read (so
    work on them overlaps reading); `RawReviews.arrival` maps the canonical order back to it.
    """
    found: list[tuple[str, bool, int, int]] = []
    pending: list[bytes] = []
    urls: dict[tuple[str, str], list[bytes]] = {}
    seen_dirs: set[str] = set()

    def want(name: str) -> bool:
        return bool(_REVIEW.match(name) or _URLS.match(name))

    try:
        for name, data in iter_members(archive, want):
            m = _REVIEW.match(name)
            if m:
                split, folder, rid, rating = m.groups()
                seen_dirs.add(f"aclImdb/{split}/{folder}/")
                found.append((split, folder == "pos", int(rid), int(rating)))
                pending.append(data)
                if len(pending) == chunk:
                    on_chunk(pending)
                    pending = []
            else:
                u = _URLS.match(name)
                assert u is not None
                urls[(u.group(1), u.group(2))] = data.splitlines()
    except ArchiveError as exc:
        raise DataError(str(exc)) from exc
    if pending:
        on_chunk(pending)
    missing = [d for d in _REQUIRED if d not in seen_dirs]
    if missing:
        raise DataError(
            f"{archive}: archive has no reviews in {', '.join(missing)} "
            "(expected the aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt layout)"
        )
    if ("train", "pos") not in urls or ("train", "neg") not in urls:
        raise DataError(
            f"{archive}: archive is missing aclImdb/train/urls_pos.txt or urls_neg.txt, "
            "which map training reviews to movies for the validation split"
        )
    # Canonical order: split, then label folder, then numeric id -> independent of tar order.
    arrival = sorted(range(len(found)), key=lambda i: (found[i][0] != "train", *found[i][1:3]))
    found = [found[i] for i in arrival]
    movie_ids: list[str | None] = []
    for split, positive, rid, _ in found:
        lines = urls.get((split, "pos" if positive else "neg"), [])
        movie = _MOVIE.search(lines[rid].decode("ascii", "replace")) if rid < len(lines) else None
        if movie is None and split == "train":
            raise DataError(
                f"{archive}: no movie url for aclImdb/train/{'pos' if positive else 'neg'}/{rid}_*"
            )
        movie_ids.append(movie.group(1) if movie else None)
    return RawReviews(
        review_id=[f"{r[0]}/{'pos' if r[1] else 'neg'}/{r[2]}" for r in found],
        split=[r[0] for r in found],
        label=np.fromiter((r[1] for r in found), dtype=np.int8, count=len(found)),
        rating=np.fromiter((r[3] for r in found), dtype=np.int8, count=len(found)),
        movie_id=movie_ids,
        arrival=np.array(arrival, dtype=np.int64),
    )


def assign_validation(movie_ids: list[str], fraction: float, seed: int) -> np.ndarray:
    """Mask of reviews in validation: whole movies, in seeded order, until `fraction` is met."""
    movies, inverse, sizes = np.unique(
        np.array(movie_ids, dtype=object), return_inverse=True, return_counts=True
    )
    order = np.random.default_rng(seed).permutation(len(movies))
    target = fraction * len(movie_ids)
    chosen = np.zeros(len(movies), dtype=bool)
    total = 0
    for m in order:
        if total >= target:
            break
        # Take a movie only if it brings the total closer to the target.
        if abs(total + sizes[m] - target) <= abs(total - target):
            chosen[m] = True
            total += sizes[m]
    return chosen[inverse]


def _table(
    raw: RawReviews, idx: np.ndarray, split: str, texts: pa.ChunkedArray, ids: pa.ChunkedArray
) -> pa.Table:
    # texts and ids are in archive (arrival) order; idx is in canonical order.
    take = pa.array(raw.arrival[idx])
    return pa.table(
        {
            "review_id": pa.array([raw.review_id[i] for i in idx], pa.string()),
            "movie_id": pa.array([raw.movie_id[i] for i in idx], pa.string()),
            "rating": pa.array(raw.rating[idx], pa.int8()),
            "label": pa.array(raw.label[idx], pa.int8()),
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
) -> ProcessedData:
    """Archive -> data/processed/<fingerprint>/ (reused when already complete and intact).

    Review bodies are decoded and tokenised while the archive is read: `CHUNK` at a time in
    local threads, or `SHARD` at a time by `submit(bodies)`, which returns an object whose
    `.result()` is `decode_chunk(bodies)` (a Prefect task's future on a Dask runner, say). The
    vocabulary is merged exactly from the chunks' counts, so the output does not depend on
    how or where the chunks ran.
    """
    if params.vocab_size <= len(text.RESERVED):
        raise DataError(f"vocab_size must be greater than {len(text.RESERVED)}")
    if not 0 < params.validation_fraction < 1:
        raise DataError("validation_fraction must be between 0 and 1 (exclusive)")
    fp = fingerprint(source_sha256, params)
    final = processed_root / fp
    existing = load_processed(final)
    if existing is not None:
        progress(f"reusing tokenised data {final}")
        return existing
    with reuse_freed_memory():  # the chunks make many large short-lived temporaries
        return _build(archive, source_sha256, final, params, progress, submit)


def _build(
    archive: Path,
    source_sha256: str,
    final: Path,
    params: TokenizeParams,
    progress: Callable[[str], None],
    submit: Callable[[list[bytes]], Any] | None,
) -> ProcessedData:
    """Tokenise the archive into `final` (see `tokenize_archive`)."""
    fp, processed_root = final.name, final.parent
    t0 = time.perf_counter()
    # Decoding and tokenising run in worker threads (or wherever `submit` sends them) while the
    # archive is still being read.
    with ThreadPoolExecutor(_THREADS) as pool:
        run = submit or (lambda bodies: pool.submit(decode_chunk, bodies))
        futures: list[Any] = []
        chunk = CHUNK if submit is None else SHARD
        raw = read_reviews(archive, lambda bodies: futures.append(run(bodies)), chunk=chunk)
        progress(f"read {len(raw.split):,} reviews in {time.perf_counter() - t0:.1f}s")
        chunks: list[TokenChunk] = [f.result() for f in futures]
    bad_bytes = sum(c.bad_bytes for c in chunks)
    if bad_bytes:
        progress(f"replaced {bad_bytes} undecodable bytes with U+FFFD")

    split = np.array(raw.split, dtype=object)
    is_train = split == "train"
    train_idx = np.flatnonzero(is_train)
    in_val = assign_validation(
        [raw.movie_id[i] for i in train_idx], params.validation_fraction, params.seed
    )
    split[train_idx[in_val]] = "validation"
    rows = {s: np.flatnonzero(split == s) for s in SPLITS}
    empty = [s for s in SPLITS if len(rows[s]) == 0]
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
        "params": params.as_dict(),
    }
    counts = {
        s: {
            "rows": int(len(rows[s])),
            "pos": int(raw.label[rows[s]].sum()),
            "neg": int(len(rows[s]) - raw.label[rows[s]].sum()),
            "movies": len({raw.movie_id[i] for i in rows[s]} - {None}),
        }
        for s in SPLITS
    }
    processed_root.mkdir(parents=True, exist_ok=True)
    # Build everything in a temporary sibling folder, then rename: readers never see a partial one.
    tmp = Path(tempfile.mkdtemp(prefix=f".{fp}.", dir=processed_root))
    try:
        (tmp / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")

        def write(split: str) -> tuple[str, dict]:  # take, encode and hash free the GIL
            path = tmp / f"{split}.parquet"
            _write_split(_table(raw, rows[split], split, texts, ids), path, meta)
            return path.name, _file_record(path)

        with ThreadPoolExecutor(_THREADS) as pool:
            files = dict(pool.map(write, SPLITS))
        files["vocab.txt"] = _file_record(tmp / "vocab.txt")
        files = dict(sorted(files.items()))
        manifest = {**meta, "counts": counts, "undecodable_bytes": bad_bytes, "files": files}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
        fsync_dir(tmp)
        if final.exists() and load_processed(final) is None:
            shutil.rmtree(final)  # damaged derived data: rebuilt just now, safe to replace
        try:
            os.rename(tmp, final)
        except OSError:
            # Another run finished the same fingerprint first; keep its (identical) output.
            if load_processed(final) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(processed_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"wrote {final} in {time.perf_counter() - t0:.1f}s")
    return ProcessedData(final, fp, counts, bad_bytes)


def _write_split(table: pa.Table, path: Path, meta: dict) -> None:
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
    pq.write_table(table, path, compression="zstd")


def _file_record(path: Path) -> dict:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def load_processed(path: Path) -> ProcessedData | None:
    """The dataset at `path` if it is complete and every file matches its manifest, else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        for name, info in manifest["files"].items():
            f = path / name
            if f.stat().st_size != info["bytes"] or file_sha256(f) != info["sha256"]:
                log.warning("tokenised data %s is damaged (%s changed)", path, name)
                return None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("tokenised data %s is unreadable: %s", path, exc)
        return None
    return ProcessedData(
        path, manifest["fingerprint"], manifest["counts"], manifest["undecodable_bytes"]
    )


def read_vocabulary(data: ProcessedData) -> list[str]:
    return data.vocabulary_path.read_text(encoding="utf-8").splitlines()
