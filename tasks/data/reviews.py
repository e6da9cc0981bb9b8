"""The labelled reviews of an aclImdb archive, and the movie-disjoint validation split."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks.data.archive import ArchiveError, iter_members

if TYPE_CHECKING:
    import pyarrow as pa

_REVIEW = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
_URLS = re.compile(r"^aclImdb/(train|test)/urls_(pos|neg|unsup)\.txt$")
log = logging.getLogger(__name__)
_LABELS = {"neg": 0, "pos": 1, "unsup": -1}  # -1: no label (written as null)
_SPLIT_ORDER = {"train": 0, "test": 1, "unsup": 2}
_MOVIE = re.compile(r"(tt\d+)")
_REQUIRED = tuple(f"aclImdb/{s}/{lab}/" for s in ("train", "test") for lab in ("neg", "pos"))


class DataError(ValueError):
    """The archive's content cannot make a valid dataset; the message says what is wrong."""


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
    archive: Path,
    on_chunk: Callable[[list[bytes]], None],
    chunk: int = 1024,
    warn: Callable[[str], None] = log.warning,
) -> RawReviews:
    """Stream the train/test reviews (and their movie urls) out of the archive.

    The archive's unlabelled reviews (aclImdb/train/unsup/) come as split "unsup", label -1;
    an archive without them (older or trimmed copies) gives none, and `warn` says so.
    Review bodies go to `on_chunk`, `chunk` at a time in archive order, as they are read (so
    work on them overlaps reading); `RawReviews.arrival` maps the canonical order back to it.
    """
    found: list[tuple[str, str, int, int]] = []  # (split, label folder, id, rating)
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
                found.append(
                    ("unsup" if folder == "unsup" else split, folder, int(rid), int(rating))
                )
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
    if "aclImdb/train/unsup/" not in seen_dirs:
        warn(
            f"{archive} has no unlabelled reviews (aclImdb/train/unsup/): the unsup split is "
            "empty and pretraining uses the training text alone"
        )

    # Canonical order: split, then label folder, then numeric id -> independent of tar order.
    def order(i: int) -> tuple[int, int, int]:
        split, folder, rid, _ = found[i]
        return _SPLIT_ORDER[split], _LABELS[folder], rid

    arrival = sorted(range(len(found)), key=order)
    found = [found[i] for i in arrival]
    movie_ids: list[str | None] = []
    for split, folder, rid, _ in found:
        lines = urls.get(("test" if split == "test" else "train", folder), [])
        movie = _MOVIE.search(lines[rid].decode("ascii", "replace")) if rid < len(lines) else None
        if movie is None and split == "train":
            raise DataError(f"{archive}: no movie url for aclImdb/train/{folder}/{rid}_*")
        movie_ids.append(movie.group(1) if movie else None)
    return RawReviews(
        review_id=[f"{'test' if r[0] == 'test' else 'train'}/{r[1]}/{r[2]}" for r in found],
        split=[r[0] for r in found],
        label=np.fromiter((_LABELS[r[1]] for r in found), dtype=np.int8, count=len(found)),
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


def add_reviews(raw: RawReviews, rows: pa.Table, source_sha256: str) -> RawReviews:
    """`raw` followed by accepted incoming rows (`id`, `label`, `movie`, `rating` columns) of
    the file with checksum `source_sha256`, as training reviews read after the archive's."""
    n = rows.num_rows
    ratings = rows.column("rating").fill_null(0).to_numpy(zero_copy_only=False)
    ids = [f"incoming/{source_sha256[:12]}/{i}" for i in rows.column("id").to_pylist()]
    return RawReviews(
        review_id=[*raw.review_id, *ids],
        split=[*raw.split, *["train"] * n],
        label=np.concatenate([raw.label, rows.column("label").to_numpy().astype(np.int8)]),
        rating=np.concatenate([raw.rating, ratings.astype(np.int8)]),
        movie_id=[*raw.movie_id, *rows.column("movie").to_pylist()],
        arrival=np.concatenate([raw.arrival, len(raw.arrival) + np.arange(n, dtype=np.int64)]),
    )


def stable_validation(
    review_ids: list[str],
    movie_ids: list[str | None],
    movie_split: dict[str | None, str],
    fraction: float,
) -> list[str]:
    """ "train" or "validation" for each new review, by a rule that never changes its answer:
    the split of its movie where the archive has that movie (so no movie straddles the two),
    else a hash of its movie (or, without one, of its id) against `fraction`."""
    out = []
    for rid, movie in zip(review_ids, movie_ids, strict=True):
        if movie is not None and movie in movie_split:
            out.append(movie_split[movie])
            continue
        key = f"movie:{movie}" if movie is not None else f"review:{rid}"
        u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
        out.append("validation" if u < fraction else "train")
    return out
