"""Tests of the `score` flow and `imdb-pipeline score`: batch scoring review files to parquet."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from flows.score import score
from tasks.serving import champion
from tasks.serving.score import SCORE_SCHEMA
from tests.imdb_fixtures import NEGATIVE, POSITIVE, Exported, review

pytestmark = pytest.mark.usefixtures("prefect_server")

GOOD = review(["the", "film", *POSITIVE])
BAD = review(["the", "film", *NEGATIVE])


def test_score_flow_writes_the_parquet_beside_the_input(exported: Exported, tmp_path: Path) -> None:
    # Given a .jsonl of three reviews, one without an id
    source = tmp_path / "reviews.jsonl"
    rows = [{"id": "a", "text": GOOD}, {"text": BAD}, {"id": "c", "text": GOOD}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    # When the flow scores it with the exported model folder
    summary = score(source, model=str(exported.model_dir))

    # Then the scores are in reviews.scored.parquet, and the summary says so
    output = tmp_path / "reviews.scored.parquet"
    table = pq.read_table(output)
    assert table.schema.equals(SCORE_SCHEMA)
    assert table.column("id").to_pylist() == ["a", "2", "c"]
    assert table.column("label").to_pylist() == ["positive", "negative", "positive"]
    assert summary["flow"] == "score"
    assert summary["output"] == str(output)
    assert (summary["model_id"], summary["data_version"]) == ("run-1", exported.data.fingerprint)
    assert (summary["rows"], summary["positive"]) == (3, 2)
    assert summary["files"][0]["output"] == str(output)
    assert summary["seconds"] > 0 and summary["reviews_per_second"] > 0


def test_cli_score_with_the_champion_prints_a_json_summary(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an artifacts folder whose champion is the tiny export, and a .txt of reviews
    models = tmp_path / "art" / "models"
    run = Path(shutil.copytree(exported.model_dir, models / "run-1"))
    champion.switch_champion(models, run)
    (tmp_path / "in.txt").write_text(f"{GOOD}\n\n{BAD}\n", encoding="utf-8")
    output = tmp_path / "out" / "scores.parquet"

    # When `imdb-pipeline score --json` runs with the default model (the champion)
    argv = ["score", "--input", str(tmp_path / "in.txt"), "--output", str(output)]
    code = main([*argv, "--artifacts-dir", str(tmp_path / "art"), "--json"])

    # Then it succeeds and its last line is the JSON summary
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert (summary["flow"], summary["model_id"], summary["rows"]) == ("score", "run-1", 2)
    assert summary["output"] == str(output)
    # And the parquet holds the two reviews under their line numbers
    assert pq.read_table(output).column("id").to_pylist() == ["1", "3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{tmp}/missing.txt"], "missing.txt does not exist"),
        (["--input", "{tmp}/in.txt"], "no champion model yet in .*pass --model PATH"),
        (["--input", "{tmp}/bad.jsonl", "--model", "{model}"], r"bad\.jsonl:1: not valid JSON"),
    ],
)
def test_cli_score_errors_exit_1_with_the_message(
    exported: Exported,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    # Given a missing input, no champion, or a broken input file
    (tmp_path / "in.txt").write_text(f"{GOOD}\n", encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    argv = [a.format(tmp=tmp_path, model=exported.model_dir) for a in args]

    # When `imdb-pipeline score --json` runs
    code = main(["score", *argv, "--artifacts-dir", str(tmp_path / "art"), "--json"])

    # Then it exits 1, saying why on stderr and in the JSON line
    assert code == 1
    out, err = capsys.readouterr()
    assert "imdb-pipeline score failed:" in err
    failed = json.loads(out.strip().splitlines()[-1])
    assert failed["ok"] is False
    assert re.search(message, failed["error"])
    assert not list(tmp_path.glob("*.parquet"))
