"""Start-up in proportion to the work: the commands with nothing to orchestrate run as plain
Python, in a fresh process, without importing Prefect (so no temporary server can start), and
only those that load a model import TensorFlow.

Each test runs `flows.cli.main` in a subprocess (this one has Prefect imported already) and
reads what it had imported after each command, and whether the garbage collector is on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.data.prepared import summary
from tasks.data.processed import TokenizeParams
from tasks.data.tokenize import tokenize_archive
from tests.imdb_fixtures import NEGATIVE, POSITIVE, Exported, review

ROOT = Path(__file__).resolve().parents[2]

# Runs each argv of argv[1] (a JSON list) through main(); one RESULT line says what each left
# imported.
CHILD = """
import gc, json, sys
from flows.cli import main

def loaded(name):
    return any(m == name or m.startswith(name + ".") for m in sys.modules)

report = []
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    names = ("prefect", "tensorflow", "keras", "sklearn", "matplotlib")
    report.append({"code": code, "gc": gc.isenabled(), **{m: loaded(m) for m in names}})
print("RESULT " + json.dumps(report))
"""


def _run_cli(argvs: list[list[str]], tmp_path: Path) -> tuple[list[dict], list[dict], str]:
    """(per command: exit code and what was imported, the JSON summaries printed, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # a flow run would start a server
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argvs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    report = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    summaries = [json.loads(line) for line in lines if line.startswith('{"flow"')]
    return report, summaries, done.stderr


def test_cached_prepare_reports_the_data_without_prefect_or_tensorflow(
    small_archive: Path, tmp_path: Path
) -> None:
    # Given the small archive tokenised as `prepare --vocab-size 500` would
    config = PipelineConfig(
        source=str(small_archive),
        sha256=file_sha256(small_archive),
        data_dir=tmp_path / "data",
        vocab_size=500,
    )
    data = tokenize_archive(
        small_archive,
        config.sha256,
        config.data_dir.resolve() / "processed",
        TokenizeParams.from_config(config),
    )
    argv = ["prepare", "--source", str(small_archive), "--sha256", config.sha256]
    argv += ["--data-dir", str(config.data_dir), "--vocab-size", "500", "--json"]

    # When `imdb-pipeline prepare --json` runs in a fresh process
    report, summaries, err = _run_cli([argv], tmp_path)

    # Then it succeeds without importing Prefect (no flow run, no server) or TensorFlow
    assert report[0].pop("code") == 0
    assert report[0].pop("gc")
    assert not any(report[0].values()), report
    # And its summary is the flow's, marked cached, and the log says why nothing ran
    assert summaries == [{**summary(data), "cached": True, "ok": True}]
    assert "nothing to do" in err and "no flow run" in err
    assert "Starting temporary server" not in err
    assert not (tmp_path / "prefect-home").exists()


def test_predict_score_and_evaluate_run_without_prefect(exported: Exported, tmp_path: Path) -> None:
    # Given reviews in a file, and the tiny exported model
    good, bad = review(["the", "film", *POSITIVE]), review(["the", "film", *NEGATIVE])
    (tmp_path / "in.txt").write_text(f"{good}\n{bad}\n", encoding="utf-8")
    model = str(exported.model_dir)
    output = tmp_path / "in.scored.parquet"

    # When predict, score and evaluate run one after the other in a fresh process
    argvs = [
        ["predict", "--model", model, "--json", good],
        ["score", "--input", str(tmp_path / "in.txt"), "--model", model, "--json"],
        ["evaluate", "--model", model, "--data-dir", str(exported.data_dir), "--json"],
    ]
    report, summaries, err = _run_cli(argvs, tmp_path)

    # Then each succeeds; they load the model (TensorFlow) but never import Prefect
    assert [r["code"] for r in report] == [0, 0, 0]
    assert not any(r["prefect"] for r in report)
    assert all(r["tensorflow"] for r in report)
    # And keras came without the scikit-learn and matplotlib it imports only for APIs unused here
    assert not any(r["sklearn"] or r["matplotlib"] for r in report)
    # And the garbage collector, off while TensorFlow was imported, is on again
    assert all(r["gc"] for r in report)
    assert "Starting temporary server" not in err
    # And the outputs are what the flows give: the scores, and the export's test metrics
    score, evaluate = summaries
    assert (score["flow"], score["rows"], score["output"]) == ("score", 2, str(output))
    assert pq.read_table(output).column("label").to_pylist() == ["positive", "negative"]
    assert "scored 2 reviews (1 positive) with run-1 in" in err
    assert evaluate["flow"] == "evaluate"
    assert evaluate["test_metrics"]["confusion_matrix"] == exported.metrics["confusion_matrix"]


def test_the_help_of_every_command_imports_neither_prefect_nor_tensorflow(
    tmp_path: Path,
) -> None:
    # Given / when the parser is built in a fresh process
    code = (
        "import sys; from flows.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'tensorflow', "
        "'keras', 'pandas'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    # Then none of the heavy libraries is imported
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_console_script_exits_with_the_commands_exit_code(tmp_path: Path) -> None:
    # Given an invalid setting, which `main` answers with exit code 2
    argv = ["prepare", "--vocab-size", "many", "--data-dir", str(tmp_path / "data")]

    # When the console script's entry point runs it
    done = subprocess.run(
        [sys.executable, "-c", "from flows.cli import entry; entry()", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then the process exits with that code and the one-line message
    assert done.returncode == 2, done.stderr
    assert "vocab_size" in done.stderr
