"""Resume cost on the real data with the default model.

1. A child process trains a fresh run and is SIGKILLed as soon as its epoch-1 checkpoint exists.
2. The `resume` flow continues the run here; we time its start to its first training step
   (loading data, model, optimizer and random state), next to the start-up of a fresh run.
3. Checkpoint writes as a fraction of epoch time, from the resumed run's own epochs.
Prints one JSON line.  Usage: python benchmarks/bench_resume.py [--epochs 3] [--max-reviews N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256, ROOT  # noqa: E402
from tasks.core.run_folder import RunFolder  # noqa: E402


def _config(args: argparse.Namespace, artifacts: Path):
    from tasks.config import PipelineConfig

    return PipelineConfig(
        source=str(REAL_ARCHIVE),
        sha256=REAL_SHA256,
        data_dir=ROOT / "data",
        artifacts_dir=artifacts,
        epochs=args.epochs,
        max_reviews=args.max_reviews,
        early_stopping=False,
    )


def child(args: argparse.Namespace) -> None:
    """Train a new run from scratch (killed by the parent after its first checkpoint)."""
    from flows.shared import prepare_data
    from tasks.core.runs import create_run
    from tasks.training.train import train

    config = _config(args, Path(args.artifacts))
    data = prepare_data(config)
    train(config, data, create_run(config.artifacts_dir, config, data, run_id="bench"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-reviews", type=int, default=None)
    parser.add_argument("--artifacts")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = Path(tmp) / "artifacts"
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--artifacts",
            str(artifacts),
            "--epochs",
            str(args.epochs),
        ]
        if args.max_reviews:
            cmd += ["--max-reviews", str(args.max_reviews)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        t_spawn = time.time()
        # Own process group: the kill must also take the Prefect server the child started.
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        first = RunFolder.under(artifacts, "bench").checkpoints / "epoch-0001" / "manifest.json"
        while not first.exists():
            if proc.poll() is not None:
                sys.exit("training child exited before its first checkpoint")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        fresh_first_epoch_s = time.time() - t_spawn

        from flows.resume import resume
        from tasks.training.train import TrainResult

        captured: list[TrainResult] = []
        import tasks.training.train as train_module

        original = train_module.train

        entered: list[float] = []

        def spy(*a, **kw):  # keep the TrainResult for its timings
            entered.append(time.time())
            result = original(*a, **kw)
            captured.append(result)
            return result

        train_module.train = spy
        t0 = time.time()
        summary = resume(run_id="bench", artifacts_dir=artifacts)
        result = captured[0]
        ckpt = sum(result.checkpoint_seconds)
        epochs = sum(result.epoch_seconds)
        out = {
            "benchmark": "resume",
            "epochs": args.epochs,
            "max_reviews": args.max_reviews,
            "resumed_from_epoch": summary["resumed_from_epoch"],
            "resume_call_to_first_step_s": round(result.first_step_at - t0, 2),
            "of_which_flow_start_and_data_check_s": round(entered[0] - t0, 2),
            "of_which_checkpoint_load_to_first_step_s": round(result.first_step_at - entered[0], 2),
            "killed_run_spawn_to_first_checkpoint_s": round(fresh_first_epoch_s, 1),
            "epoch_s": round(epochs / len(result.epoch_seconds), 2),
            "checkpoint_write_s_per_epoch": round(ckpt / len(result.checkpoint_seconds), 3),
            "checkpoint_fraction_of_epoch": round(ckpt / epochs, 4),
            "test_accuracy": round(summary["test_accuracy"], 4),
        }
        print(json.dumps(out))


if __name__ == "__main__":
    main()
