"""Child process for the kill-and-resume tests: trains a run, optionally SIGKILLing itself.

    python -m tests.train_child CONFIG_JSON DATA_DIR RUN_DIR [KILL]   (from the repo root)

It resumes from the run's newest valid checkpoint (as the `train_model` task does) and prints
`{"resume_from": N}` first and `{"epochs_completed": N}` last, one JSON object a line. KILL
names where the process kills itself with SIGKILL; the hooks are monkeypatched in here, the
production code has none:

    ckpt:E      while writing the periodic checkpoint of epoch E (saved, or copied from the
                best one of the same epoch): model.keras and state.json are in the temporary
                folder, manifest.json is not written yet
    best:E      the same, for the best-model checkpoint of epoch E
    batch:E:B   in the middle of epoch E (1-based), after its batch B (0-based)
    after:E     right after the periodic checkpoint of epoch E is saved (before pruning,
                history.csv and the epoch hook)
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(spec: str) -> None:
    import keras

    from tasks.pretraining import word2vec
    from tasks.training import checkpoint

    if spec == "pretrain":  # the vectors are learnt, their folder not yet complete

        def record(path: Path) -> dict:
            die()

        word2vec.file_record = record
        return
    kind, *numbers = spec.split(":")
    epoch = int(numbers[0])
    if kind in ("ckpt", "best"):
        folder = "checkpoints" if kind == "ckpt" else "best"
        real_write = checkpoint.atomic_write_text

        def write(path: Path, content: str) -> Path:
            tmp = path.parent
            if (
                path.name == checkpoint.MANIFEST_FILE
                and tmp.name.startswith(f".epoch-{epoch:04d}.")
                and tmp.parent.name == folder
            ):
                die()
            return real_write(path, content)

        # A periodic checkpoint of an epoch that also improved is a copy of the best one.
        real_copy = checkpoint.shutil.copyfile

        def copy(src, dst, *args, **kwargs):
            dst = Path(dst)
            if (
                dst.name == checkpoint.MANIFEST_FILE
                and dst.parent.name.startswith(f".epoch-{epoch:04d}.")
                and dst.parent.parent.name == folder
            ):
                die()
            return real_copy(src, dst, *args, **kwargs)

        checkpoint.atomic_write_text = write
        checkpoint.shutil.copyfile = copy
    elif kind == "after":
        real_save = checkpoint.save_checkpoint
        real_copy_checkpoint = checkpoint.copy_checkpoint

        def after(result, dest: Path):
            if dest.parent.name == "checkpoints" and dest.name == f"epoch-{epoch:04d}":
                die()
            return result

        def save(model, dest: Path, manifest: dict, state: dict):
            return after(real_save(model, dest, manifest, state), dest)

        def copy_checkpoint(source, dest: Path):
            return after(real_copy_checkpoint(source, dest), dest)

        checkpoint.save_checkpoint = save
        checkpoint.copy_checkpoint = copy_checkpoint
    elif kind == "batch":
        batch = int(numbers[1])

        class KillingTensorBoard(keras.callbacks.TensorBoard):
            current = -1

            def on_epoch_begin(self, e, logs=None):
                self.current = e + 1
                super().on_epoch_begin(e, logs)

            def on_train_batch_end(self, b, logs=None):
                super().on_train_batch_end(b, logs)
                if self.current == epoch and b == batch:
                    die()

        keras.callbacks.TensorBoard = KillingTensorBoard
    else:
        raise SystemExit(f"unknown kill point {spec!r}")


def main(argv: list[str]) -> int:
    from tasks.config import PipelineConfig
    from tasks.data.processed import load_processed
    from tasks.pretraining.word2vec import learn_word_vectors
    from tasks.training import train
    from tasks.training.checkpoint import find_latest_checkpoint

    config = PipelineConfig.model_validate_json(Path(argv[0]).read_text())
    data = load_processed(Path(argv[1]))
    if data is None:
        raise SystemExit(f"{argv[1]} holds no tokenised data")
    run_dir = Path(argv[2])
    run_dir.mkdir(parents=True, exist_ok=True)
    if len(argv) > 3:
        install_kill(argv[3])
    latest = find_latest_checkpoint(run_dir)
    print(json.dumps({"resume_from": latest.epoch if latest else 0}), flush=True)
    vectors = None
    if latest is None and config.word_vectors != "none":  # as the pipeline: pretrain, train
        pretrained = run_dir.with_name(run_dir.name + ".pretrained")
        vectors = learn_word_vectors(data, config, pretrained).load()
    result = train.train(config, data, run_dir, resume=latest, word_vectors=vectors)
    print(json.dumps({"epochs_completed": result.epochs_completed}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
