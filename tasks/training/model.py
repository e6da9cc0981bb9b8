"""The sentiment model: Embedding -> (Bi)LSTM stack -> pooling, plus an NBSVM n-gram branch.

With `mask_padding` the padding (id 0, at the end of each row) is masked through the LSTM
and both pools, so a review's score does not depend on the reviews batched with it. With
`ngram_order` > 0 the output logit is the LSTM head's plus a naive-Bayes weighted n-gram
branch computed from the same token ids inside the graph (`layers.NgramLookup` over the table
of the training split's n-grams, or hashed `layers.NgramIds`; `layers.NaiveBayesLogit`); the
table and its log-count ratios are counted from the training split in one pass
(`count_ngrams`), hashed ids' ratios by the model's own layer (`set_ngram_ratios`). With both
off and no word vectors this is the earlier model, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tasks.config import PipelineConfig
from tasks.training.layers import (
    CombinedAccuracy,
    CombinedProbability,
    MaskedGlobalAveragePooling1D,
    MaskedGlobalMaxPooling1D,
    NaiveBayesLogit,
    NgramIds,
    NgramLookup,
    branch_crossentropy,
    ngram_keys,
)

NGRAM_IDS = "ngram_ids"
NGRAM_LOGIT = "ngram_logit"
EMBEDDING = "embedding"
BRANCHES = "branch_logits"  # output of the two-branch training model: [LSTM, n-gram] logits


class LayerSeeds:
    """Integer seeds for every random initialiser and generator of the model, drawn in build
    order from `seed` alone.

    Keras gives an unseeded initialiser (or an LSTM's generator) a seed from Python's
    process-wide `random` module when the layer is created. Prefect's threads draw from that
    module too, at moments that depend on timing, so two runs of one config used to start
    from different LSTM weights (and a quiet machine from different ones each time).
    """

    def __init__(self, seed: int) -> None:
        self._seeds = np.random.SeedSequence(seed)

    def __call__(self) -> int:
        return int(self._seeds.spawn(1)[0].generate_state(1)[0])


def build_model(
    config: PipelineConfig,
    steps_per_epoch: int = 1,
    word_vectors: np.ndarray | None = None,
    ngrams: NgramCounts | None = None,
    epochs: int | None = None,
) -> keras.Model:
    """A compiled Keras model for token-id sequences padded with 0 (`word_vectors`, if given,
    replace the embedding's random initial values; `ngrams`, from `count_ngrams()`, gives the
    n-gram branch its table and ratios when `ngram_min_count` is set: without it the table is
    empty).
    `epochs` (default `config.epochs`) is what the learning-rate schedule spans."""
    seeds = LayerSeeds(config.seed)
    inputs = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = keras.layers.Embedding(
        config.vocab_size,
        config.embedding_dim,
        embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seeds()),
        mask_zero=config.mask_padding,
        name=EMBEDDING,
    )
    x = embedding(inputs)
    if word_vectors is not None:
        embedding.embeddings.assign(word_vectors)
    if config.embedding_dropout:
        x = keras.layers.SpatialDropout1D(
            config.embedding_dropout, seed=config.seed, name="embedding_dropout"
        )(x)
    for i in range(config.lstm_layers):
        top = i == config.lstm_layers - 1
        # Lower layers feed the next LSTM; the top one feeds pooling or the output.
        sequences = not top or config.pooling != "last"
        if config.bidirectional:
            # Each direction seeded apart: Bidirectional would copy one layer's seeds to both.
            layer = keras.layers.Bidirectional(
                lstm_layer(config, seeds, sequences, f"forward_lstm_{i + 1}"),
                backward_layer=lstm_layer(
                    config, seeds, sequences, f"backward_lstm_{i + 1}", go_backwards=True
                ),
                name=f"bilstm_{i + 1}",
            )
        else:
            layer = lstm_layer(config, seeds, sequences, f"lstm_{i + 1}")
        x = layer(x)
    # Pooling over every step lets the output see the whole review, not only its end; the mean
    # pool alone is what a bag-of-embeddings model does well on IMDB (0.887 measured here).
    pools = []
    if config.pooling in ("max", "max_mean"):
        pool = MaskedGlobalMaxPooling1D if config.mask_padding else keras.layers.GlobalMaxPooling1D
        pools.append(pool(name="max_pool")(x))
    if config.pooling in ("mean", "max_mean"):
        mean = (
            MaskedGlobalAveragePooling1D
            if config.mask_padding
            else keras.layers.GlobalAveragePooling1D
        )
        pools.append(mean(name="mean_pool")(x))
    if pools:
        x = pools[0] if len(pools) == 1 else keras.layers.Concatenate(name="pools")(pools)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    if config.ngram_order:
        grams = ngram_ids_layer(config, None if ngrams is None else ngrams.table)
        nb_logit = NaiveBayesLogit(
            grams.size,
            rate=config.ngram_rate,
            dropout=config.ngram_dropout,
            seed=config.seed,
            name=NGRAM_LOGIT,
        )
        ngram = nb_logit(grams(inputs))
        if ngrams is not None:
            nb_logit.set_ratios(ngrams.ratios)
        lstm = keras.layers.Dense(1, kernel_initializer=_glorot(seeds), name="lstm_logit")(x)
        # Trained as an ensemble (each branch on its own loss); `serving_model` combines them.
        outputs = keras.layers.Concatenate(name=BRANCHES)([lstm, ngram])
    else:
        outputs = keras.layers.Dense(
            1, activation="sigmoid", kernel_initializer=_glorot(seeds), name="sentiment"
        )(x)
    model = keras.Model(inputs, outputs, name="sentiment_lstm")
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        # A function of the optimizer's step count, which checkpoints keep: resumes stay exact.
        rate = keras.optimizers.schedules.CosineDecay(
            rate, steps_per_epoch * (epochs or config.epochs)
        )
    compile_model(model, rate, weights=branch_weights(config))
    return model


def lstm_layer(
    config: PipelineConfig,
    seeds: LayerSeeds,
    return_sequences: bool,
    name: str,
    go_backwards: bool = False,
) -> keras.layers.LSTM:
    """One LSTM with Keras' default initialisers, each seeded from `seeds`. The cuDNN path on
    GPU needs default activations, no recurrent_dropout, use_cudnn="auto", and a mask only
    over end padding."""
    return keras.layers.LSTM(
        config.lstm_units,
        return_sequences=return_sequences,
        go_backwards=go_backwards,
        kernel_initializer=_glorot(seeds),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seeds()),
        seed=seeds(),
        name=name,
    )


def _glorot(seeds: LayerSeeds) -> keras.initializers.Initializer:
    return keras.initializers.GlorotUniform(seed=seeds())


def ngram_ids_layer(
    config: PipelineConfig, table: np.ndarray | None = None
) -> NgramLookup | NgramIds:
    """The layer turning token ids into n-gram ids: an exact table or hashed buckets."""
    if not config.ngram_min_count:
        return NgramIds(config.vocab_size, config.ngram_buckets, config.ngram_order, name=NGRAM_IDS)
    table = np.zeros(1, np.int64) if table is None else table
    layer = NgramLookup(config.vocab_size, config.ngram_order, len(table), name=NGRAM_IDS)
    layer.build((None, None))
    layer.set_table(table)
    return layer


@dataclass(frozen=True)
class NgramCounts:
    """What the n-gram branch learns by counting the training reviews: `table`, 0 then the
    sorted keys of the n-grams present in at least `ngram_min_count` reviews (`NgramLookup`'s
    table, an n-gram's id its position), and `ratios`, each id's naive-Bayes log-count ratio."""

    table: np.ndarray
    ratios: np.ndarray


def count_ngrams(config: PipelineConfig, batches: Any) -> NgramCounts:
    """The table and ratios of the n-gram branch from the training split's (token ids, labels)
    `batches`, in one pass over their n-gram keys (the ratios as `set_ngram_ratios` computes
    them from the table's ids, to the last bit)."""
    pos, neg = _present_by_label(
        batches, lambda x: ngram_keys(x, config.vocab_size, config.ngram_order)
    )
    found, reviews = np.unique(np.concatenate([pos, neg]), return_counts=True)
    table = np.concatenate([[0], found[reviews >= config.ngram_min_count]]).astype(np.int64)
    counts = [_table_ids(table, k) for k in (pos, neg)]
    return NgramCounts(table, _nb_ratios(*(c[c > 0] for c in counts), size=len(table)))


def _present_by_label(batches: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero `values(x)` (each at most once per review, 0 filling the rest) of the
    positive and of the negative reviews of labelled `batches` of (token ids, labels)."""
    found: dict[bool, list[np.ndarray]] = {True: [], False: []}
    for x, y in batches:
        rows_values = np.asarray(values(x))
        labels = np.asarray(y).astype(bool)
        for positive in (True, False):
            rows = rows_values[labels == positive]
            found[positive].append(rows[rows > 0])
    empty = [np.zeros(0, np.int64)]
    return np.concatenate(found[True] or empty), np.concatenate(found[False] or empty)


def _table_ids(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each key's position in the sorted `table`, 0 for keys it lacks (as `NgramLookup`)."""
    at = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return np.where(table[at] == keys, at, 0)


def _nb_ratios(pos_ids: np.ndarray, neg_ids: np.ndarray, size: int) -> np.ndarray:
    """r = log((p / |p|) / (q / |q|)), p and q the add-one smoothed counts of reviews holding
    each id among the positive and the negative ones (ids given once per review holding them)."""
    pos = np.ones(size) + np.bincount(pos_ids, minlength=size)
    neg = np.ones(size) + np.bincount(neg_ids, minlength=size)
    ratios = np.log(pos / pos.sum()) - np.log(neg / neg.sum())
    ratios[0] = 0.0  # the padding id carries nothing (no other id stands for <oov>)
    return ratios.astype(np.float32)


def branch_weights(config: PipelineConfig) -> tuple[float, float]:
    """Weights of the [LSTM, n-gram] logits in the combined probability."""
    return (config.lstm_weight, 1.0)


def set_ngram_ratios(model: keras.Model, batches: Any) -> None:
    """Set the n-gram branch's naive-Bayes log-count ratios from labelled `batches` of
    (token ids, labels) (Wang & Manning 2012), the n-gram ids from the model's own n-gram
    layer: the same table or hashing as in use. For hashed ids; a table's come with it from
    `count_ngrams`."""
    grams = model.get_layer(NGRAM_IDS)
    pos, neg = _present_by_label(batches, grams)
    model.get_layer(NGRAM_LOGIT).set_ratios(_nb_ratios(pos, neg, grams.size))


def is_two_branch(model: keras.Model) -> bool:
    """Whether `model` is the two-branch training model (its output: the branch logits)."""
    return model.layers[-1].name == BRANCHES


def serving_model(model: keras.Model, config: PipelineConfig) -> keras.Model:
    """The model that scores reviews: one probability per review. For the two-branch model,
    the sigmoid of its branches' weighted logits (same layers and weights); else `model`."""
    if not is_two_branch(model):
        return model
    prob = CombinedProbability(branch_weights(config), name="sentiment")(model.outputs[0])
    # One input tensor, not a list of one: the model is called with a bare batch of ids.
    return keras.Model(model.input, prob, name=model.name)


def compile_model(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    optimizer: keras.optimizers.Optimizer | None = None,
    weights: tuple[float, float] = (1.0, 1.0),
) -> None:
    """Adam (or `optimizer`, to carry its state over) and binary cross-entropy: per branch of
    a two-branch model (accuracy of its branches combined with `weights`), else on its
    probability. For fresh models and for ones loaded from .h5."""
    two = is_two_branch(model)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate),
        loss=branch_crossentropy if two else "binary_crossentropy",
        metrics=[CombinedAccuracy(weights) if two else "accuracy"],
    )
