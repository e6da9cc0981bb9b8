"""Custom Keras layers of the sentiment model, registered so saved models load by name.

`keras.models.load_model` finds them once this module is imported (`import
tasks.training.layers`); the pipeline's own loaders import it, and the model card says so.
"""

from __future__ import annotations

import keras
from keras import ops
from keras.src.ops import numpy as _numpy_ops  # the NotEqual operation class, see below

PACKAGE = "imdb_pipeline"

# Embedding(mask_zero=True) computes its mask with a `NotEqual` operation in the functional
# graph; Keras 3.15 saves it, but its legacy .h5 loader cannot find that class by name.
keras.saving.get_custom_objects().setdefault("NotEqual", _numpy_ops.NotEqual)


def load_model(path, compile: bool = True) -> keras.Model:
    """`keras.models.load_model` with this module's layers registered (importing it does that)."""
    return keras.models.load_model(path, compile=compile)


@keras.saving.register_keras_serializable(package=PACKAGE)
class NgramIds(keras.layers.Layer):
    """The distinct n-grams of each review as ids, computed from its token ids in the graph.

    Unigram ids are the token ids; an n-gram of order k >= 2 whose tokens are all in the
    vocabulary (id >= 2) is hashed into one of `buckets` ids of its own range, starting at
    `vocab_size + (k - 2) * buckets`. Every id occurs at most once per row (presence, as NBSVM
    counts it), the rest of the row is 0, so neither the padding nor the row's length in its
    batch changes the set of ids.
    """

    def __init__(self, vocab_size: int, buckets: int, order: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.buckets = buckets
        self.order = order

    @property
    def size(self) -> int:
        """Number of distinct ids (0 pads)."""
        return self.vocab_size + (self.order - 1) * self.buckets

    def call(self, token_ids):
        grams = []
        for k, key, known in _windows(token_ids, self.vocab_size, self.order):
            if k > 1:  # keys fit in int64 for vocab_size**k < 2**63; mixing keeps them spread
                start = self.vocab_size + (k - 2) * self.buckets
                key = ops.mod(key * 2654435761 + k, self.buckets) + start
            grams.append(ops.where(known, key, 0))
        return _distinct(ops.concatenate(grams, axis=1))

    def compute_output_shape(self, input_shape):
        return _grams_shape(input_shape, self.order)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "buckets": self.buckets,
            "order": self.order,
        }


def _windows(token_ids, vocab_size: int, order: int):
    """(k, key, known) for k = 1..`order`: the base-`vocab_size` key of each window of k token
    ids, and whether all its tokens are in the vocabulary (padding and out-of-vocabulary words,
    ids 0 and 1, carry nothing)."""
    ids = ops.cast(token_ids, "int64")
    key, known = ids, ids > 1
    yield 1, key, known
    for k in range(2, order + 1):
        nxt = ids[:, k - 1 :]
        key = key[:, :-1] * vocab_size + nxt
        known = ops.logical_and(known[:, :-1], nxt > 1)
        yield k, key, known


def _distinct(grams):
    """Each row's values sorted, with repeats (and padding) as 0: every value once per row."""
    flat = ops.sort(grams, axis=1)
    repeat = ops.equal(flat[:, 1:], flat[:, :-1])
    first = ops.concatenate([ops.zeros_like(flat[:, :1], dtype="bool"), repeat], axis=1)
    return ops.where(first, 0, flat)


def _grams_shape(input_shape, order: int) -> tuple:
    steps = input_shape[1]
    if steps is None:
        return (input_shape[0], None)
    return (input_shape[0], sum(max(steps - k + 1, 0) for k in range(1, order + 1)))


def ngram_keys(token_ids, vocab_size: int, order: int):
    """The distinct n-grams (orders 1..`order`) of each row of token ids, as exact int64 keys.

    A unigram's key is its token id; an n-gram of order k >= 2 whose tokens are all in the
    vocabulary (id >= 2) is the base-`vocab_size` number of its ids, offset past the keys of
    lower orders, so keys of different n-grams never coincide (they fit in int64 for
    vocab_size <= 10**6 and order <= 3). Each key occurs once per row; the rest is 0.
    """
    grams = []
    offset = 0  # past the keys of the lower orders
    for k, key, known in _windows(token_ids, vocab_size, order):
        grams.append(ops.where(known, key + offset if offset else key, 0))
        offset += vocab_size**k
    return _distinct(ops.concatenate(grams, axis=1))


@keras.saving.register_keras_serializable(package=PACKAGE)
class NgramLookup(keras.layers.Layer):
    """The distinct n-grams of each review as ids in a table of n-grams, looked up exactly.

    The table (`set_table`, kept as a non-trainable weight, so saved models carry it) holds
    sorted `ngram_keys`, with 0 first: an n-gram's id is its position, and padding as well as
    any n-gram not in the table (too rare in the training reviews) get id 0. Unlike hashed ids
    no two n-grams share an id. Every id occurs at most once per row.
    """

    def __init__(self, vocab_size: int, order: int, size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.order = order
        self.size = size  # table entries, the padding key 0 included

    def build(self, input_shape) -> None:
        self.table = self.add_weight(
            shape=(self.size,), dtype="int64", initializer="zeros", trainable=False, name="keys"
        )

    def set_table(self, keys) -> None:
        keys = ops.convert_to_tensor(keys, dtype="int64")
        if tuple(keys.shape) != (self.size,):
            raise ValueError(f"an n-gram table of {self.size} keys expected, got {keys.shape}")
        self.table.assign(keys)

    def call(self, token_ids):
        keys = ngram_keys(token_ids, self.vocab_size, self.order)
        flat = ops.reshape(keys, (-1,))
        at = ops.minimum(ops.searchsorted(self.table, flat), self.size - 1)
        ids = ops.where(ops.equal(ops.take(self.table, at), flat), at, 0)
        return ops.reshape(ops.cast(ids, "int32"), ops.shape(keys))

    def compute_output_shape(self, input_shape):
        return _grams_shape(input_shape, self.order)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "order": self.order,
            "size": self.size,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class NaiveBayesLogit(keras.layers.Layer):
    """NBSVM as a layer: the sum over a review's distinct n-grams g of (w_g·rate + 0.4)·r_g/10.

    r (not trained) holds the naive-Bayes log-count ratios of the training reviews, set by
    `set_ratios`; w starts at 0 and is trained, `rate` times faster than the model's other
    weights under Adam (whose steps do not depend on a gradient's scale): the n-gram weights
    want a learning rate near 1e-2, the LSTM one near 2e-3. With w = 0 the output is the naive-Bayes
    log-odds, scaled: the branch starts as a strong linear model, and training only adjusts
    the weight of each n-gram (Wang & Manning 2012; J. Howard's trainable "NBSVM++").
    """

    def __init__(
        self,
        size: int,
        bias: float = 0.4,
        scale: float = 10.0,
        rate: float = 5.0,
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.bias = bias
        self.scale = scale
        self.rate = rate
        self.dropout = dropout
        self.seed = seed
        # Its state is a `seed_generator_state` variable, which checkpoints store.
        self.seed_generator = keras.random.SeedGenerator(seed) if dropout else None

    def build(self, input_shape) -> None:
        self.w = self.add_weight(shape=(self.size,), initializer="zeros", name="weight")
        self.r = self.add_weight(
            shape=(self.size,), initializer="zeros", trainable=False, name="nb_ratio"
        )

    def set_ratios(self, ratios) -> None:
        self.r.assign(ops.convert_to_tensor(ratios, dtype=self.r.dtype))

    def call(self, gram_ids, training=None):
        ids = ops.cast(gram_ids, "int32")
        w = ops.take(self.w, ids)
        r = ops.take(self.r, ids)  # r[0] = 0: padding adds nothing
        terms = (w * self.rate + self.bias) * r
        if training and self.dropout:  # drop whole n-grams of a review, as feature dropout
            terms = keras.random.dropout(terms, self.dropout, seed=self.seed_generator)
        return ops.sum(terms, axis=1, keepdims=True) / self.scale

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "size": self.size,
            "bias": self.bias,
            "scale": self.scale,
            "rate": self.rate,
            "dropout": self.dropout,
            "seed": self.seed,
        }


class _MaskedPooling1D(keras.layers.Layer):
    """Pooling over the unmasked steps only; a row with none (an empty review) pools to 0."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedGlobalMaxPooling1D(_MaskedPooling1D):
    """Max over the unmasked steps (Keras 3.15's GlobalMaxPooling1D ignores the mask)."""

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.max(inputs, axis=1)
        keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
        pooled = ops.max(ops.where(keep, inputs, ops.cast(-3.0e38, inputs.dtype)), axis=1)
        return ops.where(ops.any(keep, axis=1), pooled, ops.zeros_like(pooled))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedGlobalAveragePooling1D(_MaskedPooling1D):
    """Mean over the unmasked steps (Keras' own divides by zero for a row with none)."""

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        total = ops.sum(inputs * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CombinedProbability(keras.layers.Layer):
    """sigmoid(sum_i weights[i] * logit_i): the probability of branches trained apart."""

    def __init__(self, weights: tuple[float, ...] = (1.0, 1.0), **kwargs) -> None:
        super().__init__(**kwargs)
        self.branch_weights = tuple(float(w) for w in weights)

    def call(self, logits):
        return combined_probability(logits, self.branch_weights)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "weights": list(self.branch_weights)}


def combined_probability(logits, weights: tuple[float, ...]):
    """sigmoid of the weighted sum of each row's branch logits, as a column."""
    weighted = logits * ops.convert_to_tensor(weights, dtype=logits.dtype)
    return ops.sigmoid(ops.sum(weighted, axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package=PACKAGE)
def branch_crossentropy(y_true, logits):
    """The sum over branches of each branch's own binary cross-entropy (from its logit).

    Each branch is trained as if it were the only model, as the members of an ensemble are:
    trained on their sum instead, the n-gram branch fits the training set within an epoch and
    leaves the LSTM only noise to learn (measured: validation 0.905 against 0.92).
    """
    y = ops.cast(ops.reshape(y_true, (-1, 1)), logits.dtype)
    y = ops.broadcast_to(y, ops.shape(logits))
    return ops.sum(ops.binary_crossentropy(y, logits, from_logits=True), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CombinedAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy at 0.5 of `CombinedProbability` with the same weights, named "accuracy" so the
    logs (and `monitor`) read as for any model."""

    def __init__(self, weights: tuple[float, ...] = (1.0, 1.0), name="accuracy", dtype=None):
        self.branch_weights = tuple(float(w) for w in weights)
        super().__init__(_combined_accuracy, name=name, dtype=dtype, weights=self.branch_weights)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "weights": list(self.branch_weights)}


def _combined_accuracy(y_true, logits, weights):
    prob = ops.reshape(combined_probability(logits, weights), (-1,))
    y = ops.reshape(ops.cast(y_true, "float32"), (-1,)) >= 0.5
    return ops.cast(ops.equal(prob >= 0.5, y), "float32")
