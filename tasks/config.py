"""The one typed configuration: data source, tokenizer, model, training and paths."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.layout import DataLayout

DEFAULT_SOURCE = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
DEFAULT_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
_SHA256 = re.compile(r"[0-9a-f]{64}")

# What a field is for, declared once at the field (`roles=`) and read back with `fields_with`:
PREPARE = "prepare"  # a setting of the prepare command (fetch + tokenize)
TOKENIZE = "tokenize"  # the tokenised data depends on it (part of the data fingerprint)
PLACEMENT = "placement"  # where a run runs or writes, not what it computes (not in the digest)
PRETRAIN = "pretrain"  # the word vectors depend on it (with the data fingerprint)
# How the nightly takes in new data and decides, not what a run computes (not in the digest: the
# data it accepts is in the data fingerprint instead).
NIGHTLY = "nightly"


def roles(*names: str) -> dict[str, Any]:
    """`json_schema_extra` marking a field with its roles (PREPARE, TOKENIZE, PLACEMENT)."""
    return {"roles": list(names)}


def normalise_sha256(value: str) -> str:
    """`value` as 64 lower-case hex digits; ValueError naming the value otherwise."""
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise ValueError(f"{value!r} is not a valid sha256 digest (64 hexadecimal characters)")
    return digest


def default_source() -> str:
    return os.environ.get("IMDB_SOURCE") or DEFAULT_SOURCE


def default_sha256() -> str | None:
    return os.environ.get("IMDB_SHA256") or None


class PipelineConfig(BaseModel):
    """Every setting of a pipeline run; frozen so a run's config can be hashed and recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Data
    source: str = Field(
        default_factory=default_source,
        description="URL, file:// URL or path",
        json_schema_extra=roles(PREPARE),
    )
    sha256: str | None = Field(
        default_factory=default_sha256,
        validate_default=True,  # IMDB_SHA256 from the environment is checked like a given value
        description="expected archive sha256; the official digest for the official URL",
        json_schema_extra=roles(PREPARE),
    )
    data_dir: Path = Field(
        Path("data"),
        description="raw/ and processed/ live here",
        json_schema_extra=roles(PREPARE, PLACEMENT),
    )
    artifacts_dir: Path = Field(
        Path("artifacts"),
        description="runs/, models/ live here",
        json_schema_extra=roles(PLACEMENT),
    )
    vocab_size: int = Field(
        20_000,
        ge=3,
        le=1_000_000,
        description="including <pad> and <oov>",
        json_schema_extra=roles(PREPARE, TOKENIZE),
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=0.5, json_schema_extra=roles(PREPARE, TOKENIZE)
    )
    seed: int = Field(
        42,
        ge=0,
        description="seeds the split, word vectors, weights, dropout and shuffling",
        json_schema_extra=roles(PREPARE, TOKENIZE, PRETRAIN),
    )
    task_runner: Literal["default", "dask"] = Field(
        "default",
        description="tokenise in this process (default) or in shards on a Dask cluster",
        json_schema_extra=roles(PREPARE, PLACEMENT),
    )
    dask_address: str | None = Field(
        None,
        description="existing Dask scheduler (tcp://host:port); default: a local cluster",
        json_schema_extra=roles(PREPARE, PLACEMENT),
    )
    dask_workers: int = Field(
        2,
        ge=1,
        description="worker processes of the local Dask cluster",
        json_schema_extra=roles(PREPARE, PLACEMENT),
    )

    # Pretraining
    word_vectors: Literal["none", "word2vec"] = Field(
        "word2vec",
        description=(
            "initialise the embedding with word2vec vectors learnt (gensim) from the training "
            "and unlabelled reviews; none: random initialisation"
        ),
        json_schema_extra=roles(PRETRAIN),
    )
    word2vec_epochs: int = Field(
        5, ge=1, le=100, description="passes of word2vec", json_schema_extra=roles(PRETRAIN)
    )
    word_vectors_reuse_share: float = Field(
        0.05,
        ge=0,
        lt=1,
        description=(
            "a data version that adds accepted reviews to the archive keeps the archive's word "
            "vectors (word by word) while its new training reviews are at most this share of "
            "the pretraining text; 0: always learn them again"
        ),
    )
    word2vec_window: int = Field(
        5,
        ge=1,
        le=50,
        description="word2vec context words each side",
        json_schema_extra=roles(PRETRAIN),
    )
    word2vec_sample: float = Field(
        1e-3,
        ge=0,
        lt=1,
        description=(
            "word2vec skips a frequent word's occurrences at random above this share of the "
            "text (gensim's `sample`); 0: keeps them all"
        ),
        json_schema_extra=roles(PRETRAIN),
    )

    # Model
    sequence_length: int = Field(800, ge=8, le=5000, description="tokens kept (the last ones)")
    mask_padding: bool = Field(
        True,
        description=(
            "pad at the end and mask the padding in the LSTM and the pooling, so that a score "
            "depends on the review alone; off: pad at the front, unmasked"
        ),
    )
    ngram_order: int = Field(
        3,
        ge=0,
        le=3,
        description=(
            "n-gram branch beside the LSTM: naive-Bayes weighted presence of 1..N-grams "
            "(NBSVM); 0: off"
        ),
    )
    ngram_min_count: int = Field(
        2,
        ge=0,
        le=1000,
        description=(
            "n-grams in at least this many training reviews get an id of their own (an exact "
            "table, learnt from the training split); 0: all n-grams hashed into ngram_buckets"
        ),
    )
    ngram_buckets: int = Field(
        2**21,
        ge=1024,
        le=2**24,
        description="hash buckets per n-gram order above 1 (with ngram_min_count 0)",
    )
    ngram_rate: float = Field(
        10.0,
        gt=0,
        le=100,
        description="how many times faster the n-gram weights learn than the other weights",
    )
    lstm_weight: float = Field(
        0.25,
        ge=0,
        le=10,
        description=(
            "weight of the LSTM branch's logit beside the n-gram branch's in the score; the "
            "branches are trained apart, each on its own loss"
        ),
    )
    ngram_dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout of whole n-grams of a review while training"
    )
    embedding_dim: int = Field(128, ge=2, le=2048, json_schema_extra=roles(PRETRAIN))
    lstm_units: int = Field(64, ge=1, le=2048)
    lstm_layers: int = Field(1, ge=1, le=4)
    bidirectional: bool = Field(True, description="wrap each LSTM in Bidirectional")
    pooling: Literal["last", "max", "mean", "max_mean"] = Field(
        "max_mean",
        description="summarise the top LSTM's outputs: last state, max, mean or both pools",
    )
    embedding_dropout: float = Field(
        0.4, ge=0, lt=1, description="spatial dropout of whole embedding channels"
    )
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the output layer")

    # Training
    # Batch 256 at 4e-3 trains a third faster than the 0.924 model's 64 at 2e-3 (one set of
    # flags away: --batch-size 64 --learning-rate 0.002 --patience 2), and is not significantly
    # less accurate on test (McNemar p = 0.13, docs/model.md); the CPU's LSTM steps are cheaper
    # per review in larger batches.
    batch_size: int = Field(256, ge=1, le=65_536)
    # 5 epochs: 4 would save 33 s of the 7 min 48 s main job on the Intel Xeon VM, but there
    # they are significantly worse than the batch-64 model (0.92264 against 0.92456, p = 0.016;
    # 5 epochs: 0.92312, p = 0.075), although not on the EPYC VM (p = 0.21; docs/model.md).
    epochs: int = Field(5, ge=1, le=1000)
    warm_start_epochs: int = Field(
        1,
        ge=0,
        le=1000,
        description=(
            "a night whose settings are the champion's and whose new training reviews are at "
            "most word_vectors_reuse_share of the text trains its challenger from the "
            "champion's weights for this many epochs; 0: always from scratch"
        ),
    )
    learning_rate: float = Field(4e-3, gt=0, le=1, description="initial (peak) learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="cosine: decay to 0 over all epochs (a function of the step)"
    )
    deterministic: bool = Field(True, description="seed everything and use deterministic ops")
    distribution: Literal["none", "mirrored", "multi_worker"] = Field(
        "none",
        description=(
            "tf.distribute strategy: none (one device), mirrored (all local GPUs, else the CPU) "
            "or multi_worker (the cluster in TF_CONFIG); batch_size stays the global batch"
        ),
        json_schema_extra=roles(PLACEMENT),
    )
    max_reviews: int | None = Field(None, ge=1, description="cap per split, for quick runs")
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    early_stopping: bool = True
    # 0: stop at the first epoch that does not beat the best (the cosine schedule still spans
    # `epochs`). In every recorded default run (four validation curves, three kinds of VM) this
    # selects the same epoch as patience 2, so the same weights, one or two epochs (45-90 s)
    # sooner (docs/model.md); `--patience 2` trains on as before.
    patience: int = Field(0, ge=0, description="epochs without improvement before stopping")

    # Nightly: new labelled data, promotion, batch scoring
    incoming_dir: Path | None = Field(
        None,
        description="new labelled reviews (.jsonl/.csv/.parquet); default DATA_DIR/incoming",
        json_schema_extra=roles(NIGHTLY),
    )
    incoming_sources: tuple[str, ...] = Field(
        (),
        description=(
            "URLs, file:// URLs or paths of labelled-review files fetched into the incoming "
            "folder, each optionally followed by '#sha256=<hex>' (comma-separated as a flag)"
        ),
        json_schema_extra=roles(NIGHTLY),
    )
    max_review_chars: int = Field(
        100_000,
        ge=100,
        description="longer incoming reviews are rejected",
        json_schema_extra=roles(NIGHTLY),
    )
    promotion_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="a challenger is promoted if McNemar's test says it is better at this level",
        json_schema_extra=roles(NIGHTLY),
    )
    promotion_margin: float = Field(
        0.002,
        ge=0,
        lt=1,
        description=(
            "...or if trained on strictly newer data and at most this much less accurate "
            "on the same held-out reviews"
        ),
        json_schema_extra=roles(NIGHTLY),
    )
    # Batch checks of each new incoming file (`tasks/ingest/batch.py`; defaults: docs/nightly.md)
    batch_checks: bool = Field(
        True,
        description="hold a new incoming file whose labels or words do not look like the archive's",
        json_schema_extra=roles(NIGHTLY),
    )
    batch_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="a batch check fails only if its difference is significant at this level",
        json_schema_extra=roles(NIGHTLY),
    )
    batch_max_label_shift: float = Field(
        0.2,
        ge=0,
        le=1,
        description="...and the positive share is further than this from the archive's",
        json_schema_extra=roles(NIGHTLY),
    )
    batch_max_agreement_drop: float = Field(
        0.15,
        ge=0,
        le=1,
        description=(
            "...and the champion agrees with fewer of the labels than its validation accuracy "
            "less this"
        ),
        json_schema_extra=roles(NIGHTLY),
    )
    batch_max_oov_increase: float = Field(
        0.05,
        ge=0,
        le=1,
        description="...and the out-of-vocabulary share exceeds the archive's by more than this",
        json_schema_extra=roles(NIGHTLY),
    )
    to_score_dir: Path | None = Field(
        None,
        description="reviews the nightly scores with its champion; default DATA_DIR/to-score",
        json_schema_extra=roles(NIGHTLY),
    )

    # Tracking: where a run is recorded, not what it computes (not in the digest)
    mlflow_tracking_uri: str | None = Field(
        None,
        description=(
            "MLflow tracking server (http://host:port) that each run is logged to; default: "
            "the MLFLOW_TRACKING_URI environment variable, and without either no tracking"
        ),
        json_schema_extra=roles(PLACEMENT),
    )
    mlflow_registered_model: str = Field(
        "imdb-sentiment",
        min_length=1,
        description="MLflow registered model whose versions the exported models become",
        json_schema_extra=roles(PLACEMENT),
    )

    # Alerts: who hears of a run, not what it computes (not in the digest)
    notify_url: str | None = Field(
        default_factory=lambda: os.environ.get("IMDB_NOTIFY_URL") or None,
        description=(
            "http(s) URL that gets one JSON POST per event (failed, abandoned, promoted, "
            "rolled_back, held); default: the IMDB_NOTIFY_URL environment variable, else none"
        ),
        json_schema_extra=roles(PLACEMENT),
    )

    # Checkpoints
    checkpoint_every: int = Field(1, ge=1, description="save a full checkpoint every N epochs")
    keep_checkpoints: int = Field(5, ge=1, description="newest periodic checkpoints kept")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        return None if value is None else normalise_sha256(value)

    @classmethod
    def fields_with(cls, role: str) -> tuple[str, ...]:
        """Names of the fields marked with `role`, in declaration order."""
        return tuple(
            name
            for name, info in cls.model_fields.items()
            if role in ((info.json_schema_extra or {}).get("roles") or ())  # type: ignore[union-attr]
        )

    @field_validator("notify_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL with a host")
        return value

    @field_validator("incoming_sources", mode="before")
    @classmethod
    def _source_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # a flag's value: comma-separated
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @property
    def incoming_path(self) -> Path:
        """Where new labelled review files wait (and where `incoming_sources` are fetched to)."""
        return self.incoming_dir or DataLayout(self.data_dir).incoming

    @property
    def to_score_path(self) -> Path:
        """Where reviews wait for the nightly's batch scoring."""
        return self.to_score_dir or DataLayout(self.data_dir).to_score

    def expected_sha256(self) -> str | None:
        """The digest to verify against: given, or the official one for the official URL."""
        if self.sha256 is None and self.source == DEFAULT_SOURCE:
            return DEFAULT_SHA256
        return self.sha256

    def digest(self) -> str:
        """Stable hash of the settings.

        PLACEMENT fields are excluded: moving a folder changes no result, tokenising on Dask
        gives the same data, and a run may be resumed under another strategy or worker count.
        NIGHTLY fields are excluded too: what they let in is in the data fingerprint.
        """
        excluded = {*self.fields_with(PLACEMENT), *self.fields_with(NIGHTLY)}
        data = self.model_dump(mode="json", exclude=excluded)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


def load_config(path: Path | None = None, **overrides: Any) -> PipelineConfig:
    """Config from an optional YAML file, then overrides (None values are ignored)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of field: value")
        data.update(loaded or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return PipelineConfig(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
