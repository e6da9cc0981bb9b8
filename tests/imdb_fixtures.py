"""Builds small archives in the official aclImdb layout, the tiny model config, a tiny exported
model, and the small helpers several test files share."""

from __future__ import annotations

import io
import os
import random
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.data.processed import ProcessedData, TokenizeParams
from tasks.data.tokenize import tokenize_archive
from tasks.training import checkpoint as ckpt

if TYPE_CHECKING:
    from tasks.training.train import TrainResult

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
    unsup: int = 20,
) -> Path:
    """Write `path` (.tar.gz) with `per_folder` reviews in each of train/test x pos/neg and
    `unsup` unlabelled ones in train/unsup (as `<id>_0.txt`, with their urls_unsup.txt).

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
    for rid in range(unsup):
        members[f"aclImdb/train/unsup/{rid}_0.txt"] = review_text(rng, rng.random() < 0.5).encode()
    urls = [
        f"http://www.imdb.com/title/tt{3000 + rid // 5:07d}/usercomments" for rid in range(unsup)
    ]
    if unsup:
        members["aclImdb/train/urls_unsup.txt"] = ("\n".join(urls) + "\n").encode()
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
    epochs=3,
    learning_rate=0.01,
    ngram_buckets=1024,
    word2vec_epochs=2,
    # The tests count epochs (kills, resumes, warm starts): the tiny model stops early only
    # after three epochs without improvement, as the default did until 2026-12-08. The tests
    # of stopping early set their own patience.
    patience=2,
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


def train_argv(archive: Path, root: Path) -> list[str]:
    """`imdb-pipeline train` arguments for the tiny model on `archive`, data/ and art/ in `root`."""
    argv = ["train", "--source", str(archive), "--sha256", file_sha256(archive)]
    argv += ["--data-dir", str(root / "data"), "--artifacts-dir", str(root / "art")]
    for key, value in TINY_MODEL.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def checkpoint_epochs(folder: Path) -> list[int]:
    """The epochs of the valid checkpoints in `folder`, oldest first."""
    return [c.epoch for c in ckpt.list_checkpoints(folder)]


def mtimes(folder: Path) -> dict[str, int]:
    """Modification time (ns) of each entry of `folder`: equal snapshots mean nothing rewritten."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def review(words: list[str], n: int = 30) -> str:
    """A review of `n` words cycling through `words`."""
    return " ".join(words[i % len(words)] for i in range(n))


def run_in_flow(task: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`task(*args, **kwargs)` called inside a tiny flow run; its result (or its exception)."""
    from prefect import flow

    @flow(name="test-step")
    def step() -> Any:
        return task(*args, **kwargs)

    return step()


# --- a tiny trained and exported model ----------------------------------------------------------


@dataclass
class Exported:
    config: PipelineConfig
    data: ProcessedData
    run_dir: Path
    best: ckpt.Checkpoint
    metrics: dict
    model_dir: Path
    result: TrainResult

    @property
    def data_dir(self) -> Path:
        """The folder whose processed/ holds `data` (the `--data-dir` of `evaluate`)."""
        return self.data.path.parent.parent

    def copy_run(self, run_dir: Path) -> TrainResult:
        """The training run copied into `run_dir` (tests may write there): its result."""
        shutil.copytree(self.run_dir, run_dir, dirs_exist_ok=True)
        return replace(self.result, run_dir=run_dir, best=ckpt.find_best_checkpoint(run_dir))


def export_tiny_model(archive: Path, root: Path) -> Exported:
    """A tiny model trained 8 epochs on `archive` under `root`, evaluated on test and exported."""
    from tasks.evaluation import evaluate
    from tasks.serving import export
    from tasks.training import train
    from tasks.training.layers import load_model
    from tasks.training.model import serving_model

    data = tokenize_small(archive, root / "processed")
    config = tiny_config(root, source=str(archive), epochs=8, early_stopping=False)
    run_dir = root / "art" / "runs" / "run-1"
    run_dir.mkdir(parents=True)
    result = train.train(config, data, run_dir)
    best = ckpt.find_best_checkpoint(run_dir)
    assert best is not None
    model = serving_model(load_model(best.model_path, compile=False), config)
    metrics = evaluate.evaluate(model, data.split_path("test"), config)
    model_dir = export.export(
        best.model_path, root / "art" / "models", "run-1", config, data, metrics, best.epoch
    )
    return Exported(config, data, run_dir, best, metrics, model_dir, result)
