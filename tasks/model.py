"""The sentiment model: Embedding -> LSTM stack -> Dense(sigmoid)."""

from __future__ import annotations

import keras

from tasks.config import PipelineConfig


def build_model(config: PipelineConfig) -> keras.Model:
    """A compiled Keras model for token-id sequences padded at the front with 0."""
    inputs = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding")(inputs)
    if config.embedding_dropout:
        x = keras.layers.SpatialDropout1D(
            config.embedding_dropout, seed=config.seed, name="embedding_dropout"
        )(x)
    for i in range(config.lstm_layers):
        top = i == config.lstm_layers - 1
        layer = keras.layers.LSTM(
            config.lstm_units,
            # Lower layers feed the next LSTM; the top one feeds pooling or the output.
            return_sequences=not top or config.pooling == "max",
            name=f"lstm_{i + 1}",
        )
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bilstm_{i + 1}")
        x = layer(x)
    if config.pooling == "max":
        x = keras.layers.GlobalMaxPooling1D(name="max_pool")(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="sentiment")(x)
    model = keras.Model(inputs, outputs, name="sentiment_lstm")
    compile_model(model, config.learning_rate)
    return model


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam + binary cross-entropy; used for fresh models and for models loaded from .h5."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
