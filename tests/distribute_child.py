"""Child process for the distribution tests: one training attempt under `config.distribution`.

    python -m tests.distribute_child CONFIG_JSON DATA_DIR RUN_DIR [--logical-cpus N]
                                     [--stop-after E]                  (from the repo root)

A child process because logical devices must be configured before TensorFlow initialises,
and a MultiWorkerMirroredStrategy (one per worker, TF_CONFIG from the environment) takes over
its process. It resumes from the run's newest valid checkpoint, as the `train_model` task does,
and prints one JSON object a line: `{"replicas": R, "chief": bool, "resume_from": N}` first and
`{"epochs_completed": N}` (or `{"stopped_after": E}`) last. `--stop-after E` interrupts the
run once epoch E is checkpointed (an exception from the epoch hook, as an interrupted task).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class Stop(Exception):
    pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("data")
    parser.add_argument("run_dir")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=0)
    args = parser.parse_args(argv)

    if args.logical_cpus:
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
        )

    from tasks.config import PipelineConfig
    from tasks.data.processed import load_processed
    from tasks.training import distribute, train
    from tasks.training.checkpoint import find_latest_checkpoint

    config = PipelineConfig.model_validate_json(Path(args.config).read_text())
    data = load_processed(Path(args.data))
    if data is None:
        raise SystemExit(f"{args.data} holds no tokenised data")
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    strategy = distribute.make_strategy(config)  # the one `train` uses: strategies are cached
    latest = find_latest_checkpoint(run_dir)
    start = {
        "replicas": strategy.num_replicas_in_sync,
        "chief": distribute.is_chief(strategy),
        "resume_from": latest.epoch if latest else 0,
    }
    print(json.dumps(start), flush=True)

    def on_epoch(done: int, total: int, metrics: dict) -> None:
        if done == args.stop_after:
            raise Stop

    try:
        result = train.train(config, data, run_dir, resume=latest, on_epoch=on_epoch)
    except Stop:
        print(json.dumps({"stopped_after": args.stop_after}), flush=True)
        return 0
    print(json.dumps({"epochs_completed": result.epochs_completed}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
