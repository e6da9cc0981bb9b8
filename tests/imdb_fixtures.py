"""Builds small archives in the official aclImdb layout, and the tiny model config, for tests."""

from __future__ import annotations

import io
import os
import random
import tarfile
from collections.abc import Iterable
from pathlib import Path

from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.data.processed import ProcessedData, TokenizeParams
from tasks.data.tokenize import tokenize_archive

POSITIVE = ["great", "wonderful", "excellent", "loved", "brilliant", "moving", "superb"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull", "worst", "waste"]
FILLER = ["the", "film", "movie", "plot", "actor", "scene", "story", "and", "a", "it", "was"]


def review_text(rng: random.Random, positive: bool, words: int = 40) -> str:
    """A synthetic review whose label is learnable from its words."""
    cue = POSITIVE if positive else NEGATIVE
    tokens = [rng.choice(cue) if rng.random() < 0.25 else rng.choice(FILLER) for _ in range(words)]
    half = words // 2
    return " ".join(tokens[:half]) + "<br /><br />" + " ".join(tokens[half:]) + "!"


def build_archive(
    path: Path,
    per_folder: int = 40,
    reviews_per_movie: int = 4,
    seed: int = 0,
    skip: Iterable[str] = (),
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write `path` (.tar.gz) with `per_folder` reviews in each of train/test x pos/neg.

    `skip` names folders or files to leave out (e.g. "aclImdb/test/neg"); `extra` adds members.
    """
    rng = random.Random(seed)
    skip = tuple(skip)
    members: dict[str, bytes] = {"aclImdb/README": b"synthetic IMDB archive for tests\n"}
    for split in ("train", "test"):
        for folder in ("neg", "pos"):
            urls = []
            for rid in range(per_folder):
                rating = rng.randint(7, 10) if folder == "pos" else rng.randint(1, 4)
                body = review_text(rng, folder == "pos").encode()
                members[f"aclImdb/{split}/{folder}/{rid}_{rating}.txt"] = body
                movie = 1000 + (rid // reviews_per_movie) + (0 if folder == "pos" else 500)
                urls.append(f"http://www.imdb.com/title/tt{movie:07d}/usercomments")
            members[f"aclImdb/{split}/urls_{folder}.txt"] = ("\n".join(urls) + "\n").encode()
    members["aclImdb/train/unsup/0_0.txt"] = b"unlabelled review, must be skipped"
    members["aclImdb/train/labeledBow.feat"] = b"0:1 1:2\n"
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(members):
            if name.startswith(skip):
                continue
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    return path


TINY_MODEL = dict(
    vocab_size=60,
    validation_fraction=0.2,
    sequence_length=40,
    embedding_dim=8,
    lstm_units=8,
    bidirectional=False,
    batch_size=16,
    learning_rate=0.01,
)


def tiny_config(root: Path, **overrides) -> PipelineConfig:
    """A tiny-model config with data/ and art/ under `root`; `overrides` win."""
    return PipelineConfig(
        **{
            "source": "unused.tar.gz",
            "data_dir": root / "data",
            "artifacts_dir": root / "art",
            **TINY_MODEL,
            **overrides,
        }
    )


def tokenize_small(archive: Path, root: Path) -> ProcessedData:
    """`archive` tokenised into `root` with the tiny model's vocabulary and validation split."""
    return tokenize_archive(
        archive, "0" * 64, root, TokenizeParams(vocab_size=60, validation_fraction=0.2)
    )


def pipeline_config(archive: Path, root: Path, **overrides) -> PipelineConfig:
    """A tiny 2-epoch config for a whole pipeline run on `archive` (pinned by its sha256)."""
    settings = {
        "source": str(archive),
        "sha256": file_sha256(archive),
        "artifacts_dir": root / "artifacts",
        "epochs": 2,
    }
    return tiny_config(root, **{**settings, **overrides})


def fail_temp_folder_renames(monkeypatch) -> None:
    """Make every rename of a finished `*.tmp` folder fail, as a kill at that moment would."""
    real_rename = os.rename

    def failing_rename(src, dst, *args, **kwargs):
        if Path(src).name.endswith(".tmp"):
            raise OSError("killed")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing_rename)
