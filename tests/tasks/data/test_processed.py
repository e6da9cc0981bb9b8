"""Tests of the tokenised dataset folder: its parameters and its verified loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.config import TOKENIZE, PipelineConfig
from tasks.data.processed import MANIFEST, SPLITS, ProcessedData, TokenizeParams, load_processed
from tests.imdb_fixtures import tokenize_small

TOKENIZE_FIELDS = PipelineConfig.fields_with(TOKENIZE)

# --- TokenizeParams ---------------------------------------------------------------------------


def test_params_hold_exactly_the_configs_tokenize_fields() -> None:
    # Given / when / then: the parameters are the config's TOKENIZE fields, nothing else
    assert set(TOKENIZE_FIELDS) == {"vocab_size", "validation_fraction", "seed"}
    assert tuple(TokenizeParams.model_fields) == TOKENIZE_FIELDS


def test_from_config_takes_the_configs_tokenize_fields(tmp_path: Path) -> None:
    # Given a config with non-default tokenize settings and other settings
    config = PipelineConfig(
        vocab_size=123, validation_fraction=0.3, seed=7, epochs=9, data_dir=tmp_path
    )

    # When the tokenize parameters are taken from it
    params = TokenizeParams.from_config(config)

    # Then they are the config's values of those fields
    assert params.model_dump() == {"vocab_size": 123, "validation_fraction": 0.3, "seed": 7}
    assert params == TokenizeParams(vocab_size=123, validation_fraction=0.3, seed=7)


def test_defaults_are_the_configs_defaults() -> None:
    # Given / when default parameters and a default config
    params, config = TokenizeParams(), PipelineConfig()

    # Then each field has the config's default
    for name in TOKENIZE_FIELDS:
        assert getattr(params, name) == getattr(config, name), name
    assert TokenizeParams.from_config(config) == params


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"vocab_size": 2}, "vocab_size"),
        ({"vocab_size": "many"}, "vocab_size"),
        ({"validation_fraction": 0.5}, "validation_fraction"),
        ({"validation_fraction": 0}, "validation_fraction"),
        ({"epochs": 3}, "epochs"),  # not a tokenize field
    ],
)
def test_invalid_values_raise_a_validation_error_naming_the_field(values: dict, field: str) -> None:
    # Given / when / then: an invalid or unknown value is refused, naming the field
    with pytest.raises(ValidationError, match=field) as raised:
        TokenizeParams(**values)
    assert [e["loc"] for e in raised.value.errors()] == [(field,)]


def test_params_are_frozen() -> None:
    # Given parameters / When one is assigned / Then it is refused (they name a folder)
    params = TokenizeParams()
    with pytest.raises(ValidationError, match="vocab_size"):
        params.vocab_size = 10  # type: ignore[misc]


# --- load_processed ---------------------------------------------------------------------------


@pytest.fixture
def built(small_archive: Path, tmp_path: Path) -> ProcessedData:
    """The small archive tokenised into a fresh folder for each test (it may damage it)."""
    return tokenize_small(small_archive, tmp_path / "processed")


def test_load_processed_of_an_intact_folder_is_the_data(built: ProcessedData) -> None:
    # Given a folder just tokenised / When it is loaded / Then it is the same data
    loaded = load_processed(built.path)
    assert loaded == built
    assert sorted(loaded.counts) == sorted(SPLITS)
    assert loaded.split_path("test").is_file()
    assert loaded.vocabulary_path.is_file()


def test_load_processed_of_a_missing_folder_is_none(tmp_path: Path) -> None:
    # Given / when / then: a folder that does not exist (or is empty) is not data
    assert load_processed(tmp_path / "processed" / "0123456789abcdef") is None
    assert load_processed(tmp_path) is None


@pytest.mark.parametrize("name", ["train.parquet", "vocab.txt"])
def test_load_processed_of_a_truncated_file_is_none(built: ProcessedData, name: str) -> None:
    # Given one of its files cut short
    path = built.path / name
    path.write_bytes(path.read_bytes()[:-10])

    # When / then the folder is not loaded
    assert load_processed(built.path) is None


def test_load_processed_of_a_changed_file_is_none(built: ProcessedData) -> None:
    # Given a file changed in place, its size kept
    path = built.split_path("validation")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))

    # When / then the folder is not loaded
    assert load_processed(built.path) is None


def test_load_processed_of_a_deleted_file_is_none(built: ProcessedData) -> None:
    # Given a split deleted / When / then the folder is not loaded
    built.split_path("test").unlink()
    assert load_processed(built.path) is None


@pytest.mark.parametrize("manifest", ["{not json", "[]", '{"files": {}}'])
def test_load_processed_of_an_unreadable_manifest_is_none(
    built: ProcessedData, manifest: str
) -> None:
    # Given a manifest that is not JSON, not a mapping, or lacks keys
    (built.path / MANIFEST).write_text(manifest)

    # When / then the folder is not loaded (and no exception escapes)
    assert load_processed(built.path) is None


def test_load_processed_without_a_manifest_is_none(built: ProcessedData) -> None:
    # Given a folder whose manifest (written last) is missing, as after a kill
    (built.path / MANIFEST).unlink()

    # When / then the folder is not loaded
    assert load_processed(built.path) is None
