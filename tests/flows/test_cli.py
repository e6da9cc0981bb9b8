"""Tests of the `imdb-pipeline` command-line parser and its validation of config values.

Nothing here runs a flow: a command with an invalid config stops before doing anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from flows.cli import ALL_FIELDS, build_parser, config_from_args, main
from tasks.config import PREPARE, PipelineConfig
from tests.imdb_fixtures import train_argv

COMMANDS = (
    "prepare",
    "train",
    "nightly",
    "resume",
    "evaluate",
    "predict",
    "score",
    "mlflow-sync",
    "champion",
    "incoming",
)


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == COMMANDS
    return sub.choices[name]


def _flags(name: str) -> set[str]:
    return {flag for action in _subcommand(name)._actions for flag in action.option_strings}


def _config_flags(fields: tuple[str, ...]) -> set[str]:
    """`--field-name` for every field, and `--no-field-name` for the boolean ones."""
    flags = set()
    for name in fields:
        flag = "--" + name.replace("_", "-")
        flags.add(flag)
        if isinstance(PipelineConfig.model_fields[name].default, bool):
            flags.add("--no-" + flag[2:])
    return flags


def test_train_has_a_flag_for_every_config_field() -> None:
    # Given / when the flags of `train`
    flags = _flags("train")

    # Then every config field has one (booleans a --no- form too), plus the run's own flags
    every_field = tuple(PipelineConfig.model_fields)
    expected = _config_flags(every_field) | {"--config", "--json", "--run-id", "-h", "--help"}
    assert flags == expected
    assert {"--bidirectional", "--no-bidirectional", "--max-reviews", "--seed"} <= flags


def test_prepare_has_exactly_the_prepare_fields() -> None:
    # Given / when the flags of `prepare`
    flags = _flags("prepare")

    # Then they are the PREPARE fields and --config/--json, no model or training settings
    prepare_fields = PipelineConfig.fields_with(PREPARE)
    assert flags == _config_flags(prepare_fields) | {"--config", "--json", "-h", "--help"}
    assert "--epochs" not in flags and "--sequence-length" not in flags


def test_unset_flags_are_none_so_files_and_defaults_apply() -> None:
    # Given / when `train` parsed without any flag
    args = build_parser().parse_args(["train"])

    # Then every config field is None, and the config is the default one
    assert all(getattr(args, name) is None for name in ALL_FIELDS)
    assert config_from_args(args, ALL_FIELDS) == PipelineConfig()


@pytest.mark.parametrize(
    ("argv", "expected"), [(["--no-bidirectional"], False), (["--bidirectional"], True)]
)
def test_boolean_flags_parse_to_booleans(argv: list[str], expected: bool) -> None:
    # Given / when a boolean flag in its positive or --no- form
    args = build_parser().parse_args(["train", *argv])

    # Then it parses to the boolean, and the config takes it
    assert args.bidirectional is expected
    assert config_from_args(args, ALL_FIELDS).bidirectional is expected


def test_values_are_converted_by_the_config_and_flags_win_over_the_file(tmp_path: Path) -> None:
    # Given a config file and flags that set some of the same fields
    (tmp_path / "config.yaml").write_text("epochs: 5\nlstm_units: 16\npooling: mean\n")
    argv = ["train", "--config", str(tmp_path / "config.yaml"), "--epochs", "7"]
    args = build_parser().parse_args([*argv, "--learning-rate", "0.01", "--max-reviews", "100"])

    # When the config is made from them
    config = config_from_args(args, ALL_FIELDS)

    # Then the flags' text became typed values, and win over the file, which wins over defaults
    assert (config.epochs, config.learning_rate, config.max_reviews) == (7, 0.01, 100)
    assert (config.lstm_units, config.pooling) == (16, "mean")
    assert config.batch_size == PipelineConfig().batch_size


@pytest.mark.parametrize("argv", [["train", "--vocab-sise", "5"], ["prepare", "--epochs", "2"]])
def test_unknown_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Given a flag the command does not have / When / then argparse exits with 2, naming it
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert argv[1] in capsys.readouterr().err


# --- invalid values: main exits with 2, naming the field, before doing anything -----------


def test_cli_rejects_invalid_option_before_doing_anything(
    small_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a vocabulary size that leaves no room for words
    data_dir = tmp_path / "data"
    argv = ["prepare", "--source", str(small_archive), "--data-dir", str(data_dir)]

    # When the CLI runs
    code = main([*argv, "--vocab-size", "1", "--json"])

    # Then it exits with 2, names the field on stderr and writes nothing
    out, err = capsys.readouterr()
    assert code == 2
    assert "vocab_size" in err
    assert out == ""
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("extra", "yaml_text", "field"),
    [
        (["--epochs", "0"], None, "epochs"),
        (["--pooling", "avg"], None, "pooling"),
        (["--learning-rate", "abc"], None, "learning_rate"),
        ([], "epochs: 1\nlstm_unitz: 8\n", "lstm_unitz"),
    ],
)
def test_cli_train_rejects_an_invalid_config_before_doing_anything(
    small_archive: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    yaml_text: str | None,
    field: str,
) -> None:
    # Given an invalid setting on the command line or in a config file
    argv = [*train_argv(small_archive, tmp_path), *extra]
    if yaml_text is not None:
        (tmp_path / "config.yaml").write_text(yaml_text)
        argv += ["--config", str(tmp_path / "config.yaml")]

    # When the CLI runs
    code = main([*argv, "--json"])

    # Then it exits with 2, names the field on stderr, and creates no run or data folder
    out, err = capsys.readouterr()
    assert code == 2
    assert field in err
    assert "invalid configuration" in err
    assert out == ""
    assert not (tmp_path / "art").exists()
    assert not (tmp_path / "data").exists()


def test_prefect_logs_a_users_mistake_without_its_traceback() -> None:
    import logging
    import sys

    from flows import cli
    from tasks.data.reviews import DataError

    def logged(logger: str, exc: Exception) -> logging.LogRecord:
        try:
            raise exc
        except Exception:
            info = sys.exc_info()
        return logging.getLogRecordFactory()(logger, logging.ERROR, "x", 1, "failed", (), info)

    # Given the command line's log records
    before = logging.getLogRecordFactory()
    cli._without_user_error_tracebacks()
    try:
        # When Prefect logs a bad archive, then the message stays and the traceback goes
        record = logged("prefect.task_runs", DataError("archive is truncated"))
        assert record.exc_info is None and record.getMessage() == "failed"
        # And a bug keeps its traceback, as does any other logger's record of a mistake
        assert logged("prefect.flow_runs", KeyError("bug")).exc_info is not None
        assert logged("tasks.data", DataError("archive is truncated")).exc_info is not None
    finally:
        logging.setLogRecordFactory(before)
