"""learn_word_vectors: word2vec on the training and unlabelled reviews -> the embedding's start.

gensim's Word2Vec (C-optimised CBOW) learns a vector per vocabulary id from the reviews of the
`train` split and the archive's 50,000 unlabelled ones (`unsup`); validation and test text are
not used. The vectors are written to data/pretrained/<key>/, where the key hashes the data
fingerprint, the config's PRETRAIN fields and this module's source: that folder is the cache,
reused only while its manifest verifies, and written atomically, so a crash leaves no
half-written vectors. With `deterministic` gensim trains in one thread (its threads interleave
updates in a timing-dependent order) and hashes words with a fixed function, so the same data
and settings give the same vectors, bit for bit.

A data version that adds accepted reviews to the archive's (`base`) reuses the vectors learnt
on the archive while the new training reviews are at most `word_vectors_reuse_share` of the
pretraining text: each word keeps its vector, looked up by the word (the vocabulary is rebuilt
per version), and a word new to the vocabulary starts as an unseen one does. Past that share,
or for the archive itself, the vectors are learnt again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.config import PRETRAIN, PipelineConfig
from tasks.core.atomic import (
    atomic_dir,
    atomic_write_text,
    file_record,
    reuse_verified,
    verified_manifest,
)
from tasks.data.processed import UNLABELLED, ProcessedData

VECTORS_FILE = "vectors.npy"
MANIFEST = "manifest.json"
CORPUS = ("train", UNLABELLED)
_CODE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WordVectors:
    """A verified folder of pretrained vectors: row i of `vectors.npy` is vocabulary id i."""

    path: Path
    key: str

    def load(self) -> np.ndarray:
        return np.load(self.path / VECTORS_FILE)


def vectors_key(data: ProcessedData, config: PipelineConfig, reused_from: str | None = None) -> str:
    """Digest of what the vectors depend on: data, PRETRAIN settings, this module's code, and
    the key of the vectors they were carried over from, if any."""
    params = config.model_dump(mode="json", include=set(config.fields_with(PRETRAIN)))
    key = {"data": data.fingerprint, "params": params, "code": _CODE}
    if reused_from is not None:
        key["reused_from"] = reused_from
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def new_text_share(data: ProcessedData, base: ProcessedData) -> float:
    """The share of `data`'s pretraining reviews (train + unsup) that `base` does not hold."""
    rows = {name: data.counts.get(name, {}).get("rows", 0) for name in CORPUS}
    new = rows["train"] - base.counts.get("train", {}).get("rows", 0)
    return max(new, 0) / max(sum(rows.values()), 1)


def reusable_base(
    data: ProcessedData, base: ProcessedData | None, config: PipelineConfig
) -> tuple[ProcessedData, float] | None:
    """`base` and the new text's share when `data`'s vectors may be carried over from it."""
    if base is None or base.incoming or not data.incoming or base.fingerprint == data.fingerprint:
        return None
    share = new_text_share(data, base)
    return (base, share) if share <= config.word_vectors_reuse_share else None


def load_vectors(path: Path) -> WordVectors | None:
    """The vectors at `path` if complete and matching their manifest, else None (a folder that
    exists but does not verify is named in a warning, and learnt again by the caller)."""
    manifest, damage = verified_manifest(path, MANIFEST)
    if manifest is None:
        if path.exists():
            log.warning("pretrained vectors %s are damaged (%s): learning them again", path, damage)
        return None
    return WordVectors(path, manifest["key"])


def learn_word_vectors(
    data: ProcessedData,
    config: PipelineConfig,
    root: Path,
    progress: Callable[[str], None] = log.info,
    base: ProcessedData | None = None,
) -> WordVectors:
    """Vectors for `config.vocab_size` ids in root/<key>/ (reused when intact): learnt on
    `data`, or carried over from those of `base` (the archive alone) when `data` adds little
    text to it."""
    reuse = reusable_base(data, base, config)
    if reuse is not None:
        return _carry_over(data, *reuse, config, root, progress)
    key = vectors_key(data, config)
    final = root / key
    existing = reuse_verified(final, load_vectors, "word vectors", progress)
    if existing is not None:
        return existing
    t0 = time.perf_counter()
    corpus = _sentences(data, config.vocab_size)
    progress(
        f"word2vec on {len(corpus):,} reviews ({sum(map(len, corpus)):,} tokens) of "
        f"{' + '.join(s for s in CORPUS if data.counts.get(s, {}).get('rows'))}"
    )
    vectors = _train(corpus, config, progress)
    _write(final, key, vectors, data, config)
    progress(f"wrote word vectors {final} in {time.perf_counter() - t0:.0f}s")
    return WordVectors(final, key)


def _carry_over(
    data: ProcessedData,
    base: ProcessedData,
    share: float,
    config: PipelineConfig,
    root: Path,
    progress: Callable[[str], None],
) -> WordVectors:
    """The vectors of `base`, learnt if needed, moved to `data`'s vocabulary word by word."""
    learnt = learn_word_vectors(base, config, root, progress)
    key = vectors_key(data, config, reused_from=learnt.key)
    final = root / key
    progress(
        f"reusing the word vectors of data version {base.fingerprint} ({learnt.path.name}): "
        f"the new training reviews are {share:.2%} of the pretraining text, at most "
        f"word_vectors_reuse_share = {config.word_vectors_reuse_share:.0%}"
    )
    existing = reuse_verified(final, load_vectors, "carried-over word vectors", progress)
    if existing is not None:
        return existing
    old = {word: i for i, word in enumerate(base.vocabulary())}
    new = data.vocabulary()
    # Row i: the vector of word i where the archive's vocabulary has it; the others start as
    # the words word2vec never saw do.
    vectors = random_start(config.vocab_size, config.embedding_dim, config.seed)
    known = [(i, old[word]) for i, word in enumerate(new) if i > 0 and word in old]
    if known:
        rows, from_rows = (np.array(x, dtype=np.int64) for x in zip(*known, strict=True))
        vectors[rows] = learnt.load()[from_rows]
    _write(final, key, vectors, data, config, reused_from=learnt.key)
    progress(
        f"wrote word vectors {final}: {len(known):,} of {len(new) - 1:,} words carried over, "
        f"{len(new) - 1 - len(known):,} new to the vocabulary start at random"
    )
    return WordVectors(final, key)


def _write(
    final: Path,
    key: str,
    vectors: np.ndarray,
    data: ProcessedData,
    config: PipelineConfig,
    reused_from: str | None = None,
) -> None:
    with atomic_dir(final) as tmp:
        np.save(tmp / VECTORS_FILE, vectors)
        manifest = {
            "key": key,
            "data_fingerprint": data.fingerprint,
            "params": config.model_dump(mode="json", include=set(config.fields_with(PRETRAIN))),
            "reused_from": reused_from,
            "files": {VECTORS_FILE: file_record(tmp / VECTORS_FILE)},
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))


def _word(i: int) -> str:
    return str(i)


def _sentences(data: ProcessedData, vocab_size: int) -> list[list[str]]:
    """Each review of the corpus splits as a list of its in-vocabulary ids, as strings."""
    words = [_word(i) for i in range(vocab_size)]  # shared strings: no copy per token
    corpus = []
    for split in CORPUS:
        path = data.split_path(split)
        if not path.exists():
            continue
        column = pq.read_table(path, columns=["token_ids"]).column("token_ids").combine_chunks()
        flat, offsets = np.asarray(column.values), np.asarray(column.offsets)
        for start, end in zip(offsets[:-1], offsets[1:], strict=True):
            row = flat[start:end]
            corpus.append([words[i] for i in row[row > 1]])  # no padding, no <oov>
    return corpus


def _stable_hash(word: str) -> int:
    """gensim seeds each word's initial vector with this; Python's own `hash` of a str
    changes from process to process."""
    return int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")


def _train(
    corpus: list[list[str]], config: PipelineConfig, progress: Callable[[str], None]
) -> np.ndarray:
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    class Progress(CallbackAny2Vec):
        def __init__(self) -> None:
            self.epoch = 0
            self.started = time.perf_counter()

        def on_epoch_end(self, model: Word2Vec) -> None:
            self.epoch += 1
            progress(
                f"word2vec epoch {self.epoch}/{config.word2vec_epochs} "
                f"({time.perf_counter() - self.started:.0f}s)"
            )

    model = Word2Vec(
        corpus,
        vector_size=config.embedding_dim,
        window=config.word2vec_window,
        sample=config.word2vec_sample,
        min_count=1,  # the vocabulary is already the tokenizer's
        sg=0,  # CBOW: several times faster than skip-gram on two cores, as good an init here
        epochs=config.word2vec_epochs,
        seed=config.seed,
        workers=1 if config.deterministic else 2,
        hashfxn=_stable_hash,
        callbacks=[Progress()],
    )
    return embedding_matrix(model.wv, config.vocab_size, config.embedding_dim, config.seed)


def random_start(vocab_size: int, dim: int, seed: int) -> np.ndarray:
    """Keras' default uniform(±0.05) start of an embedding (seeded), with a zero padding row."""
    rows = np.random.default_rng(seed).uniform(-0.05, 0.05, (vocab_size, dim)).astype(np.float32)
    rows[0] = 0.0
    return rows


def embedding_matrix(vectors, vocab_size: int, dim: int, seed: int) -> np.ndarray:
    """Row i: the vector of id i; ids word2vec never saw keep the `random_start`."""
    rows = random_start(vocab_size, dim, seed)
    for i in _ids(vectors, vocab_size):
        rows[i] = vectors[_word(i)]
    return rows


def _ids(vectors, vocab_size: int) -> Iterator[int]:
    return (i for i in range(2, vocab_size) if _word(i) in vectors.key_to_index)
