"""Behaviour tests for tasks.config: YAML + overrides, validation messages, environment defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.config import DEFAULT_SHA256, DEFAULT_SOURCE, ConfigError, PipelineConfig, load_config

DIGEST = "0123456789abcdef" * 4


def _yaml(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(content, encoding="utf-8")
    return path


def test_defaults_without_file_or_overrides() -> None:
    # Given nothing / When loaded / Then the documented defaults apply
    config = load_config()
    assert config.source == DEFAULT_SOURCE
    assert config.sha256 is None
    assert (config.vocab_size, config.validation_fraction, config.seed) == (20_000, 0.1, 42)
    assert config.data_dir == Path("data")


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    # Given a YAML file setting a few fields
    path = _yaml(tmp_path, "vocab_size: 500\nseed: 7\nsource: /archives/imdb.tar.gz\n")

    # When loaded with an override for one of them and None for another
    config = load_config(path, seed=9, source=None, validation_fraction="0.2")

    # Then the override wins, None leaves the file's value, and text is converted
    assert config.vocab_size == 500
    assert config.seed == 9
    assert config.source == "/archives/imdb.tar.gz"
    assert config.validation_fraction == 0.2


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    # Given an empty file / When loaded / Then it equals the defaults
    assert load_config(_yaml(tmp_path, "")) == load_config()


@pytest.mark.parametrize("where", ["file", "override"])
def test_unknown_field_is_named(tmp_path: Path, where: str) -> None:
    # Given a misspelt field in the file or in the overrides
    # When / then loading fails naming it
    with pytest.raises(ConfigError, match="vocab_sise"):
        if where == "file":
            load_config(_yaml(tmp_path, "vocab_sise: 100\n"))
        else:
            load_config(vocab_sise=100)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", -5),
        ("vocab_size", 2),
        ("vocab_size", "many"),
        ("validation_fraction", 0.7),
        ("validation_fraction", 0),
        ("seed", -1),
        ("sha256", "abc"),
        ("sha256", "g" * 64),
    ],
)
def test_bad_value_is_named(tmp_path: Path, field: str, value: object) -> None:
    # Given an invalid value in a YAML file and the same as an override
    path = _yaml(tmp_path, f"{field}: {value!r}\n")

    # When / then both fail with a ConfigError naming the field
    for load in (lambda: load_config(path), lambda: load_config(**{field: value})):
        with pytest.raises(ConfigError, match=rf"invalid configuration: .*\b{field}\b"):
            load()


def test_every_problem_is_reported_at_once() -> None:
    # Given two bad fields / When loaded / Then the message names both
    with pytest.raises(ConfigError) as info:
        load_config(vocab_size=-1, validation_fraction=0.9)
    assert "vocab_size" in str(info.value)
    assert "validation_fraction" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    # Given a path that does not exist / When / then the message says so and names it
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(missing)
    assert str(missing) in str(info.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    # Given a file that is not valid YAML / When / then the message says so and names it
    path = _yaml(tmp_path, "vocab_size: [1, 2\nseed: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, content: str) -> None:
    # Given valid YAML that is not field: value pairs / When / then it is rejected clearly
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(_yaml(tmp_path, content))


def test_config_is_frozen() -> None:
    # Given a loaded config / When a field is assigned / Then it refuses
    config = load_config()
    with pytest.raises(ValidationError):
        config.vocab_size = 5  # type: ignore[misc]
    assert config.vocab_size == 20_000


def test_sha256_is_normalised() -> None:
    # Given a digest in upper case with surrounding blanks / When loaded / Then it is normalised
    assert load_config(sha256=f"  {DIGEST.upper()}\n").sha256 == DIGEST


def test_expected_sha256_is_official_only_for_the_official_url() -> None:
    # Given the official URL, another source, and explicit digests
    # When / then only the official URL without a digest falls back to the official digest
    assert load_config(source=DEFAULT_SOURCE).expected_sha256() == DEFAULT_SHA256
    assert load_config(source="/local/aclImdb_v1.tar.gz").expected_sha256() is None
    assert load_config(source="https://mirror.example/aclImdb_v1.tar.gz").expected_sha256() is None
    assert load_config(source=DEFAULT_SOURCE, sha256=DIGEST).expected_sha256() == DIGEST
    assert load_config(source="/local/a.tar.gz", sha256=DIGEST).expected_sha256() == DIGEST


def test_environment_supplies_source_and_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given IMDB_SOURCE and IMDB_SHA256 in the environment
    monkeypatch.setenv("IMDB_SOURCE", "/shared/imdb/aclImdb_v1.tar.gz")
    monkeypatch.setenv("IMDB_SHA256", DIGEST.upper())

    # When loaded without those fields
    config = load_config()

    # Then they are the defaults (validated like given values) and used for verification
    assert config.source == "/shared/imdb/aclImdb_v1.tar.gz"
    assert config.sha256 == DIGEST
    assert config.expected_sha256() == DIGEST
    # while explicit values still win
    assert load_config(source="other.tar.gz", sha256=DEFAULT_SHA256).source == "other.tar.gz"
    assert load_config(sha256=DEFAULT_SHA256).sha256 == DEFAULT_SHA256


def test_empty_environment_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given empty IMDB_SOURCE / IMDB_SHA256 / When loaded / Then the built-in defaults apply
    monkeypatch.setenv("IMDB_SOURCE", "")
    monkeypatch.setenv("IMDB_SHA256", "")
    config = load_config()
    assert config.source == DEFAULT_SOURCE
    assert config.expected_sha256() == DEFAULT_SHA256


def test_invalid_environment_digest_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a malformed IMDB_SHA256 / When loaded / Then the sha256 field is named
    monkeypatch.setenv("IMDB_SHA256", "not-a-digest")
    with pytest.raises(ConfigError, match="sha256"):
        load_config()


def test_digest_ignores_paths_but_not_settings(tmp_path: Path) -> None:
    # Given configs differing only in paths, and one differing in a setting
    base = PipelineConfig(source="a.tar.gz")
    moved = PipelineConfig(source="a.tar.gz", data_dir=tmp_path, artifacts_dir=tmp_path / "art")
    other = PipelineConfig(source="a.tar.gz", vocab_size=1000)

    # Then moving folders keeps the digest while a setting changes it
    assert base.digest() == moved.digest()
    assert base.digest() != other.digest()
