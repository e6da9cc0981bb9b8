"""Text normalisation, tokenisation, vocabulary and encoding, vectorised with Arrow compute.

Rules (tokenizer version `TOKENIZER_VERSION`):
1. Text is decoded as UTF-8; undecodable bytes become U+FFFD (counted by the caller).
2. Lower-cased (Unicode-aware).
3. HTML tags such as `<br />` (IMDB's line breaks) become a space.
4. `!` and `?` are tokens of their own: they carry sentiment ("great!!!", "really?").
5. Every other character that is not a letter, digit or apostrophe separates tokens.
6. Apostrophes are kept only inside a word (`don't`, `90's`), a run of them as one
   (`let''s` -> `let's`); leading or trailing ones (quotes such as `'plot'`) are dropped.
A token is then a maximal run of letters, digits and inner apostrophes, or a single `!`/`?`.

The rules are written below as Arrow regular expressions (`_tokenize_regex`, the reference);
`tasks.data.fast_tokens` applies the same rules with vectorised byte operations, several times
faster, and is what `tokenize` uses.

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

from tasks.data.fast_tokens import tokenize_fast

TOKENIZER_VERSION = "1"
_CHUNK = 1024  # texts per tokenisation chunk
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


def _tokenize_regex(texts: pa.Array) -> pa.ListArray:
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
    # Small chunks keep the per-byte work arrays in cache; Arrow and NumPy release the GIL,
    # so chunks also run in parallel threads.
    chunks = [arr.slice(i, _CHUNK) for i in range(0, len(arr), _CHUNK)] or [arr]
    if threads == 1 or len(chunks) == 1:
        parts = [tokenize_fast(c) for c in chunks]
    else:
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(tokenize_fast, chunks))
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def vocabulary_from_counts(tokens: pa.Array, counts: pa.Array, vocab_size: int) -> list[str]:
    """Vocabulary from (token, count) pairs; a token may appear in several pairs (summed)."""
    table = pa.table({"token": tokens, "count": pa.array(counts, pa.int64())})
    table = table.group_by("token").aggregate([("count", "sum")])
    table = table.filter(pc.greater(table["count_sum"], 0))
    order = pc.sort_indices(table, sort_keys=[("count_sum", "descending"), ("token", "ascending")])
    top = pc.take(table["token"], order[: vocab_size - len(RESERVED)])
    return list(RESERVED) + top.to_pylist()


def encode(tokens: pa.ListArray, vocabulary: Sequence[str]) -> pa.ListArray:
    """Map token lists to list<int32> ids using `vocabulary` (index = id)."""
    ids = vocabulary_ids(tokens.flatten(), vocabulary)
    # A sliced ListArray's offsets do not start at 0, but flatten() returns only its values.
    offsets = pc.subtract(tokens.offsets, tokens.offsets[0])
    return pa.ListArray.from_arrays(offsets, ids)


def vocabulary_ids(words: pa.Array, vocabulary: Sequence[str]) -> pa.Int32Array:
    """Id of each word (OOV_ID when not in the vocabulary)."""
    known = pa.array(list(vocabulary[len(RESERVED) :]), pa.string())
    index = pc.index_in(words, value_set=known)
    return pc.add(pc.fill_null(index, OOV_ID - len(RESERVED)), len(RESERVED)).cast(pa.int32())


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
