"""tf.distribute for training: the strategy a config names, the chief, and Keras workarounds."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tasks.config import PipelineConfig

_STRATEGIES: dict[str, Any] = {}


def make_strategy(config: PipelineConfig) -> Any:
    """The tf.distribute strategy `config.distribution` names.

    none: the current (default, one-device) strategy. mirrored: MirroredStrategy over all local
    GPUs, or the CPU when there is none. multi_worker: MultiWorkerMirroredStrategy over the
    cluster in TF_CONFIG. One strategy per kind per process: a MultiWorkerMirroredStrategy
    configures the process's collective ops and cannot be created twice (task retries reuse it).
    """
    import tensorflow as tf

    if config.distribution == "none":
        return tf.distribute.get_strategy()
    if config.distribution == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise RuntimeError(
            "distribution 'multi_worker' needs the TF_CONFIG environment variable (the cluster "
            'and this process\'s task, e.g. {"cluster": {"worker": ["host0:port", '
            '"host1:port"]}, "task": {"type": "worker", "index": 0}}) on every worker'
        )
    strategy = _STRATEGIES.get(config.distribution)
    if strategy is None:
        if config.distribution == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _STRATEGIES[config.distribution] = strategy
    return strategy


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run's files: task "chief", else worker 0 (TF_CONFIG).

    Always true outside multi-worker training.
    """
    return bool(strategy.extended.should_checkpoint)


def distribute_options(dataset: Any, strategy: Any) -> Any:
    """`dataset` (global batches) set up to be split by `strategy`.

    The batches are built by a map over precomputed row lists (no `batch` op, no files), so tf.data
    can neither shard by file nor compute a static batch size: tf.distribute splits each global
    batch into one slice per replica along the batch axis, and the DATA policy then gives each
    worker its replicas' slices. Every worker keeps the whole, identical epoch plan, so a global
    step sees the same rows whatever the worker count. Set explicitly: AUTO would first try FILE.
    """
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def adapt_fit_to_strategy(model: Any, strategy: Any, element_spec: Any) -> None:
    """Work around two failures of Keras 3's `fit` under tf.distribute (keras-team/keras#20585).

    Tied to the Keras pin (keras>=3.15,<3.16 in pyproject.toml): it replaces the private
    `Model._maybe_symbolic_build` and wraps `train_step`/`test_step`. When the pin moves, run
    tests/tasks/training/test_distribute.py without this function (comment out its call in
    `train`); once both issues are fixed upstream and those tests pass, delete it.

    1. Before training, `fit` averages its first distributed batch across replicas to learn
       the input shapes. That fails when the replicas' slices differ in size (a 7-row batch
       on 2 replicas: "Inputs to operation AddN ... must have the same size and shape") and,
       across workers, always (`strategy.reduce` takes no (x, y) tuple: "Attempt to convert a
       value (PerReplica ...) to a Tensor"). Only shapes and dtypes are needed, so metrics,
       loss and optimizer are built from the dataset's element spec instead, as `fit` does
       in a single process.
    2. Across workers, each train and test step's logs are averaged along axis 0, which fails
       on scalar metrics ("Invalid reduction dimension 0 for input with 0 dimensions",
       tensorflow/tensorflow#72388). The steps return them with a leading axis of 1 instead.
       Their values are equal on every replica (metric variables are mirrored and summed
       across replicas at each update), so the mean of the copies is exact.
    Call it only for a model built under a strategy's scope; without one, `fit` is untouched.
    """
    import tensorflow as tf

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    model._maybe_symbolic_build = symbolic_build
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return

    def with_leading_axis(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapped(data: Any) -> Any:
            return tf.nest.map_structure(lambda v: tf.expand_dims(v, 0), step(data))

        return wrapped

    model.train_step = with_leading_axis(model.train_step)
    model.test_step = with_leading_axis(model.test_step)
