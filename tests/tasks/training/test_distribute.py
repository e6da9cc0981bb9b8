"""Distributed training: MirroredStrategy over two logical CPUs, two-process multi-worker.

Each training run is a child process (tests/distribute_child.py): logical devices must be
configured before TensorFlow initialises, and a MultiWorkerMirroredStrategy takes over the
process it runs in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.config import ConfigError, PipelineConfig, load_config
from tasks.core.run_folder import RunFolder
from tasks.data.processed import ProcessedData
from tasks.training import checkpoint as ckpt
from tasks.training import dataset, distribute
from tasks.training import train as train_mod
from tests.imdb_fixtures import checkpoint_epochs, tiny_config, tokenize_small

ROOT = Path(__file__).resolve().parents[3]
# Seconds per child, a hang guard: a tiny run takes ~10 s alone, minutes on a loaded machine.
TIMEOUT = 600


@pytest.fixture(scope="module")
def data(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> ProcessedData:
    """The small archive tokenised once for the module (64 train, 16 validation reviews)."""
    return tokenize_small(small_archive, tmp_path_factory.mktemp("processed"))


def _config(tmp_path: Path, **overrides) -> PipelineConfig:
    settings = dict(
        dropout=0.3,
        embedding_dropout=0.2,
        early_stopping=False,
        checkpoint_every=1,
        keep_checkpoints=10,
    )
    return tiny_config(tmp_path, **{**settings, **overrides})


@dataclass(frozen=True)
class Child:
    returncode: int
    lines: list[dict]
    output: str

    def line(self, key: str) -> dict:
        found = [line for line in self.lines if key in line]
        assert found, f"no {key!r} line in the output:\n{self.output}"
        return found[-1]


def _argv(config_file: Path, data: ProcessedData, run_dir: Path, *extra: str) -> list[str]:
    # -m from the repo root: run as a script, tests/ would come first on sys.path and its
    # `tasks` test package would shadow the real one.
    return [
        sys.executable,
        "-m",
        "tests.distribute_child",
        str(config_file),
        str(data.path),
        str(run_dir),
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    """The child's environment: no TF_CONFIG of ours leaks in, unless given."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _result(returncode: int, stdout: str, stderr: str) -> Child:
    lines = [json.loads(s) for s in stdout.splitlines() if s.startswith("{")]
    return Child(returncode, lines, stdout + stderr)


def _run(argv: list[str], env: dict[str, str]) -> Child:
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return _result(proc.returncode, proc.stdout, proc.stderr)


def _write_config(config: PipelineConfig, path: Path) -> Path:
    path.write_text(config.model_dump_json())
    return path


def _leftovers(run_dir: Path) -> list[Path]:
    """Temporary files or folders of atomic writes (all dot-named) anywhere in the run."""
    return list(run_dir.rglob(".*"))


def test_distribution_is_validated_and_left_out_of_the_digest(tmp_path: Path) -> None:
    # Given the same settings under each strategy
    configs = [_config(tmp_path, distribution=d) for d in ("none", "mirrored", "multi_worker")]

    # Then the default is none, and the digest (what a resume checks) is the same for all
    assert _config(tmp_path).distribution == "none"
    assert len({c.digest() for c in configs}) == 1
    # And an unknown strategy is refused, naming the field
    with pytest.raises(ConfigError, match="distribution"):
        load_config(distribution="parameter_server")


def test_multi_worker_without_tf_config_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no TF_CONFIG in the environment
    monkeypatch.delenv("TF_CONFIG", raising=False)

    # When / then: asking for multi-worker training names the missing variable
    with pytest.raises(RuntimeError, match="TF_CONFIG"):
        distribute.make_strategy(_config(tmp_path, distribution="multi_worker"))


def test_mirrored_over_two_cpus_trains_checkpoints_and_resumes_on_one_device(
    data: ProcessedData, tmp_path: Path
) -> None:
    # Given a 3-epoch run under MirroredStrategy over two logical CPU devices, interrupted
    # once its epoch-2 checkpoint is written
    mirrored = _config(tmp_path, epochs=3, distribution="mirrored")
    run_dir = tmp_path / "run"
    first = _run(
        _argv(
            _write_config(mirrored, tmp_path / "mirrored.json"),
            data,
            run_dir,
            "--logical-cpus",
            "2",
            "--stop-after",
            "2",
        ),
        _env(),
    )

    # Then it trained on two replicas, from scratch, and stopped after epoch 2
    assert first.returncode == 0, first.output
    assert first.line("replicas") == {"replicas": 2, "chief": True, "resume_from": 0}
    assert first.line("stopped_after") == {"stopped_after": 2}
    # And wrote both epochs' checkpoints; batch_size is the global batch: 4 steps an epoch
    steps = dataset.steps_per_epoch(64, 16)
    assert steps == 4
    assert checkpoint_epochs(run_dir / "checkpoints") == [1, 2]
    latest = ckpt.find_latest_checkpoint(run_dir)
    assert latest is not None
    assert latest.manifest["global_step"] == 2 * steps
    assert latest.manifest["config_digest"] == mirrored.digest()
    assert [int(r["epoch"]) for r in RunFolder(run_dir).read_history()] == [1, 2]
    mirrored_history = RunFolder(run_dir).read_history()

    # When the run is resumed without a strategy, on the one default device
    single = _config(tmp_path, epochs=3, distribution="none")
    assert single.digest() == mirrored.digest()
    resumed = _run(_argv(_write_config(single, tmp_path / "single.json"), data, run_dir), _env())

    # Then it continued from the epoch-2 checkpoint and completed epoch 3
    assert resumed.returncode == 0, resumed.output
    assert resumed.line("replicas") == {"replicas": 1, "chief": True, "resume_from": 2}
    assert resumed.line("epochs_completed") == {"epochs_completed": 3}
    assert checkpoint_epochs(run_dir / "checkpoints") == [1, 2, 3]
    final = ckpt.find_latest_checkpoint(run_dir)
    assert final is not None
    assert final.manifest["global_step"] == 3 * steps
    history = RunFolder(run_dir).read_history()
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert history[:2] == mirrored_history  # the mirrored epochs are kept, not redone
    assert final.state()["epoch"] == 3 and len(final.state()["history"]) == 3
    assert _leftovers(run_dir) == []


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_two_workers_train_one_epoch_and_only_the_chief_writes_one_checkpoint(
    data: ProcessedData, tmp_path: Path
) -> None:
    # Given a 1-epoch multi-worker config and a two-worker cluster on 127.0.0.1
    config = _config(tmp_path, epochs=1, distribution="multi_worker")
    config_file = _write_config(config, tmp_path / "config.json")
    run_dir = tmp_path / "shared" / "run"  # the same folder for both workers
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]

    # When each worker trains in its own process
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(
            subprocess.Popen(
                _argv(config_file, data, run_dir),
                cwd=ROOT,
                env=_env(TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            results.append(_result(proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    chief, other = results

    # Then both took part in one two-replica run and finished the epoch
    assert chief.returncode == 0, chief.output
    assert other.returncode == 0, other.output
    assert chief.line("replicas") == {"replicas": 2, "chief": True, "resume_from": 0}
    assert other.line("replicas") == {"replicas": 2, "chief": False, "resume_from": 0}
    assert (
        chief.line("epochs_completed") == other.line("epochs_completed") == {"epochs_completed": 1}
    )
    # And exactly one checkpoint was written (by the chief), complete and verifiable
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-0001"]
    found, why = ckpt.verify_checkpoint(run_dir / "checkpoints" / "epoch-0001")
    assert found is not None, why
    assert found.manifest["epoch"] == 1
    # batch_size is global: each step took one global batch, split between the workers
    assert found.manifest["global_step"] == dataset.steps_per_epoch(64, 16)
    assert sorted(p.name for p in (run_dir / "best").iterdir()) == ["epoch-0001"]
    assert [int(r["epoch"]) for r in RunFolder(run_dir).read_history()] == [1]
    # And no temporary file or folder of a save remains
    assert _leftovers(run_dir) == []


def _lstms(model) -> list:
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            found += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, keras.layers.LSTM):
            found.append(layer)
    return found


def _op_types(model) -> set[str]:
    """Op types of a traced training-mode forward pass, nested functions included."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=True))
    graph = fn.get_concrete_function(tf.TensorSpec([None, None], tf.int32)).graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_the_lstm_keeps_every_condition_of_the_cudnn_kernel(tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    from tasks.training.model import build_model

    # Given the model of a stacked bidirectional config with every dropout on
    model = build_model(_config(tmp_path, bidirectional=True, lstm_layers=2))

    # Then each LSTM keeps what Keras' cuDNN path needs: default activations, a bias, no
    # recurrent dropout, no unrolling, use_cudnn "auto", and a mask only over padding that the
    # input pipeline puts at the end of each row (tests/tasks/training/test_dataset.py)
    lstms = _lstms(model)
    assert len(lstms) == 4
    for lstm in lstms:
        assert lstm.use_cudnn == "auto"
        assert lstm.recurrent_dropout == 0
        assert lstm.unroll is False and lstm.use_bias is True
        assert lstm.activation is keras.activations.tanh
        assert lstm.recurrent_activation is keras.activations.sigmoid
    assert model.get_layer("embedding").mask_zero is True
    assert not any(isinstance(layer, keras.layers.Masking) for layer in model.layers)
    # And without a GPU the generic loop runs (the GPU test below checks the cuDNN kernel)
    if not tf.config.list_logical_devices("GPU"):
        types = _op_types(model)
        assert "While" in types
        assert not any(t.startswith("CudnnRNN") for t in types)


def test_on_a_gpu_the_lstm_runs_the_cudnn_kernel_and_trains_deterministically(
    tmp_path: Path,
) -> None:
    import numpy as np
    import tensorflow as tf

    from tasks.training.model import build_model

    if not tf.config.list_logical_devices("GPU"):
        pytest.skip("no GPU: the cuDNN kernel is only used on one")
    # Given the stacked bidirectional model, with deterministic ops as configured by default
    config = _config(tmp_path, bidirectional=True, lstm_layers=2)
    assert config.deterministic
    train_mod.setup_determinism(config)
    model = build_model(config)

    # Then every LSTM runs as one cuDNN op: no generic step loop is left in the graph
    types = _op_types(model)
    assert "CudnnRNNV3" in types, sorted(types)
    assert "While" not in types, sorted(types)
    # And it trains under op determinism (the cuDNN backward pass included)
    rng = np.random.default_rng(0)
    x = rng.integers(1, config.vocab_size, size=(32, 40)).astype("int32")
    y = rng.integers(0, 2, size=(32,)).astype("float32")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
