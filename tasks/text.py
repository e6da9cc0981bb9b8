"""Text normalisation, tokenisation, vocabulary and encoding, vectorised with Arrow compute.

Rules (tokenizer version `TOKENIZER_VERSION`):
1. Text is decoded as UTF-8; undecodable bytes become U+FFFD (counted by the caller).
2. Lower-cased (Unicode-aware).
3. HTML tags such as `<br />` (IMDB's line breaks) become a space.
4. `!` and `?` are tokens of their own: they carry sentiment ("great!!!", "really?").
5. Every other character that is not a letter, digit or apostrophe separates tokens.
6. Apostrophes are kept only inside a word (`don't`, `90's`); leading or trailing ones
   (quotes such as `'plot'`) are dropped.
A token is then a maximal run of letters, digits and inner apostrophes, or a single `!`/`?`.

Ids: 0 pads, 1 stands for any out-of-vocabulary token, 2.. are the vocabulary in order of
decreasing training-set frequency, ties broken by the token's code-point order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TOKENIZER_VERSION = "1"
PAD_ID = 0
OOV_ID = 1
RESERVED = ("<pad>", "<oov>")

# Applied in order; RE2 syntax (Arrow's regex engine) has no look-around, hence the groups.
_REWRITES: tuple[tuple[str, str], ...] = (
    (r"<[^>]*>", " "),
    (r"([!?])", r" \1 "),
    (r"[^\p{L}\p{N}'!?]+", " "),
    (r"(^|[^\p{L}\p{N}])'+", r"\1"),
    (r"'+([^\p{L}\p{N}]|$)", r"\1"),
)


def _tokenize_chunk(texts: pa.Array) -> pa.ListArray:
    s = pc.utf8_lower(texts)
    for pattern, replacement in _REWRITES:
        s = pc.replace_substring_regex(s, pattern, replacement)
    split = pc.utf8_split_whitespace(s)
    return _drop_empty_tokens(split)


def _drop_empty_tokens(lists: pa.ListArray) -> pa.ListArray:
    """Remove the "" that whitespace splitting yields for leading/trailing blanks."""
    lists = lists.cast(pa.list_(pa.string())) if lists.type != pa.list_(pa.string()) else lists
    flat = lists.flatten()
    empty = pc.equal(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    if not empty.any():
        return lists
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(lists).to_numpy()
    lengths = lengths - np.bincount(parents[empty], minlength=len(lengths))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(~empty)))


def tokenize(texts: pa.Array | Sequence[str], threads: int | None = None) -> pa.ListArray:
    """Token lists (list<string>) for each text, following the module's rules."""
    arr = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.string())
    threads = threads or min(os.cpu_count() or 1, 8)
    if threads == 1 or len(arr) < 1000:
        return _tokenize_chunk(arr)
    # Arrow kernels release the GIL, so chunks tokenise in parallel threads.
    step = -(-len(arr) // threads)
    chunks = [arr.slice(i, step) for i in range(0, len(arr), step)]
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(_tokenize_chunk, chunks))
    return pa.concat_arrays(parts)


def build_vocabulary(tokens: pa.ListArray, vocab_size: int) -> list[str]:
    """The `vocab_size - 2` most frequent tokens, ties broken by code-point order."""
    if vocab_size <= len(RESERVED):
        raise ValueError(f"vocab_size must be greater than {len(RESERVED)} (got {vocab_size})")
    counts = pc.value_counts(tokens.flatten())
    table = pa.table({"token": counts.field("values"), "count": counts.field("counts")})
    order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("token", "ascending")])
    top = pc.take(table["token"], order[: vocab_size - len(RESERVED)])
    return list(RESERVED) + top.to_pylist()


def encode(tokens: pa.ListArray, vocabulary: Sequence[str]) -> pa.ListArray:
    """Map token lists to list<int32> ids using `vocabulary` (index = id)."""
    words = pa.array(list(vocabulary[len(RESERVED) :]), pa.string())
    index = pc.index_in(tokens.flatten(), value_set=words)
    ids = pc.add(pc.fill_null(index, OOV_ID - len(RESERVED)), len(RESERVED)).cast(pa.int32())
    # A sliced ListArray's offsets do not start at 0, but flatten() returns only its values.
    offsets = pc.subtract(tokens.offsets, tokens.offsets[0])
    return pa.ListArray.from_arrays(offsets, ids)


def decode_utf8(raw: Sequence[bytes]) -> tuple[pa.StringArray, int]:
    """Decode review bytes as UTF-8; returns the strings and how many bytes were undecodable."""
    lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
    offsets = np.zeros(len(raw) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    binary = pa.Array.from_buffers(
        pa.large_binary(), len(raw), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(raw))]
    )
    try:
        return binary.cast(pa.large_string()).cast(pa.string()), 0
    except pa.ArrowInvalid:
        pass  # some review is not valid UTF-8: decode one by one, replacing and counting
    bad_bytes = 0
    texts = []
    for item in raw:
        try:
            texts.append(item.decode("utf-8"))
        except UnicodeDecodeError:
            strict_part = item.decode("utf-8", "ignore")
            replaced = item.decode("utf-8", "replace")
            bad_bytes += len(item) - len(strict_part.encode("utf-8"))
            texts.append(replaced)
    return pa.array(texts, pa.string()), bad_bytes
