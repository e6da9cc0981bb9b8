"""Tests of batch scoring: reading review files, scoring them to parquet, the to-score inbox."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.artifacts import Artifact

from tasks.serving import champion
from tasks.serving.champion import ModelInfo, model_info
from tasks.serving.predict import Predictor
from tasks.serving.score import (
    SCORE_SCHEMA,
    read_score_input,
    resolve_model,
    score_path,
    score_texts,
    score_waiting,
)
from tasks.serving.steps import score_reviews, score_waiting_reviews
from tests.imdb_fixtures import NEGATIVE, POSITIVE, Exported, review, review_text, run_in_flow

GOOD = review(["the", "film", *POSITIVE])
BAD = review(["the", "film", *NEGATIVE])


def _model(exported: Exported) -> ModelInfo:
    return resolve_model(exported.model_dir, Path("unused"))


def _copy_export(exported: Exported, models: Path) -> Path:
    """The tiny export copied to `models/run-1` (tests may write beside it)."""
    return Path(shutil.copytree(exported.model_dir, models / "run-1"))


# --- read_score_input -----------------------------------------------------------------------


def test_every_format_gives_ids_and_texts(tmp_path: Path) -> None:
    # Given the same two reviews with ids as .jsonl, .csv and .parquet (the text files starting
    # with a byte-order mark, as some editors and spreadsheets write them)
    texts = ["great film", 'awful, "dull" plot']
    lines = [json.dumps({"id": i, "text": t}) for i, t in zip(["r1", "r2"], texts, strict=True)]
    (tmp_path / "a.jsonl").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text(
        '\ufeffid,text\nr1,great film\nr2,"awful, ""dull"" plot"\n', encoding="utf-8"
    )
    pq.write_table(pa.table({"id": ["r1", "r2"], "text": texts}), tmp_path / "a.parquet")

    # When / then each reads as (ids, texts) in order, ids as given
    for name in ("a.jsonl", "a.csv", "a.parquet"):
        assert read_score_input(tmp_path / name) == (["r1", "r2"], texts), name


def test_missing_ids_are_line_or_row_numbers(tmp_path: Path) -> None:
    # Given reviews without ids: a .txt with blank lines, a .jsonl with a blank line and one id,
    # a .csv with only a text column and an empty id, a .parquet with integer and null ids
    (tmp_path / "a.txt").write_text("great film\n\n  \nawful plot\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(
        '{"text": "great film"}\n\n{"text": "awful plot", "id": 7}\n{"text": "ok"}\n',
        encoding="utf-8",
    )
    (tmp_path / "a.csv").write_text("text\ngreat film\nawful plot\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("text,id\ngreat film,\nawful plot,x\n", encoding="utf-8")
    pq.write_table(pa.table({"text": ["great film", "awful plot"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [10, None], "text": ["a", "b"]}), tmp_path / "b.parquet")

    # When / then blank .txt lines are skipped and keep their numbers; other ids are numbered
    assert read_score_input(tmp_path / "a.txt") == (["1", "4"], ["great film", "awful plot"])
    assert read_score_input(tmp_path / "a.jsonl")[0] == ["1", "7", "4"]
    assert read_score_input(tmp_path / "a.csv") == (["1", "2"], ["great film", "awful plot"])
    assert read_score_input(tmp_path / "b.csv")[0] == ["1", "x"]
    assert read_score_input(tmp_path / "a.parquet")[0] == ["1", "2"]
    assert read_score_input(tmp_path / "b.parquet")[0] == ["10", "2"]


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    # Given a CSV row without one value per column (the reader's own tests cover the rest)
    path = tmp_path / "r.csv"
    path.write_text("id,text\n1,great,extra\n", encoding="utf-8")

    # When / then reading it fails, naming the file and the line
    with pytest.raises(ValueError, match=r"r\.csv:2: .*one value per column"):
        read_score_input(path)


# --- resolve_model --------------------------------------------------------------------------


def test_champion_resolves_to_the_linked_export(exported: Exported, tmp_path: Path) -> None:
    # Given an artifacts folder with an export and no champion yet
    models = tmp_path / "art" / "models"
    run = _copy_export(exported, models)

    # When / then "champion" fails with a hint
    with pytest.raises(FileNotFoundError, match="no champion model yet in .*pass --model PATH"):
        resolve_model("champion", tmp_path / "art")

    # When the export becomes champion / then "champion" resolves to it, link followed
    champion.switch_champion(models, run)
    model = resolve_model("champion", tmp_path / "art")
    assert (model.path, model.run_id) == (run.resolve(), "run-1")
    assert model.data_version == exported.data.fingerprint


def test_a_model_path_or_a_file_in_it_resolves_to_the_folder(
    exported: Exported, tmp_path: Path
) -> None:
    # Given an export, and a copy of it without its model card
    copy = _copy_export(exported, tmp_path / "models")
    (copy / "model-card.json").unlink()

    # When / then a folder or a file inside resolves to the folder; no card: data "unknown"
    expected = model_info(exported.model_dir.resolve())
    assert resolve_model(exported.model_dir, tmp_path) == expected
    assert resolve_model(str(exported.model_dir / "model.keras"), tmp_path) == expected
    assert resolve_model(copy, tmp_path).data_version is None  # scores say "unknown"


def test_a_path_that_is_not_an_export_is_named(tmp_path: Path) -> None:
    # Given an empty folder and a missing path / When / then the error names each
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is not an exported model folder"):
        resolve_model(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="model .*nowhere does not exist"):
        resolve_model(tmp_path / "nowhere", tmp_path)


# --- score_texts and score_path -------------------------------------------------------------


def test_scoring_a_file_writes_the_schema_and_matches_each_review_alone(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a .jsonl of 24 reviews of mixed lengths (one empty) with ids
    rng = random.Random(5)
    texts = [review_text(rng, rng.random() < 0.5, words=rng.randint(3, 120)) for _ in range(21)]
    texts = [GOOD, BAD, *texts[:10], "", *texts[10:]]
    ids = [f"r{i}" for i in range(len(texts))]
    lines = [json.dumps({"id": i, "text": t}) for i, t in zip(ids, texts, strict=True)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = _model(exported)

    # When the file is scored to parquet
    summary = score_path(source, model, tmp_path / "out" / "scores.parquet")

    # Then the parquet has the score schema, a row per review in order, stamped with the model
    table = pq.read_table(tmp_path / "out" / "scores.parquet")
    assert table.schema.equals(SCORE_SCHEMA)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ids
    assert [r["text_sha256"] for r in rows] == [
        hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts
    ]
    assert {(r["model_id"], r["data_version"]) for r in rows} == {
        ("run-1", exported.data.fingerprint)
    }
    prob = np.array([r["probability"] for r in rows])
    assert [r["label"] for r in rows] == ["positive" if p >= 0.5 else "negative" for p in prob]
    assert (rows[0]["label"], rows[1]["label"]) == ("positive", "negative")
    # And each probability is the one of the review scored alone (batch independence)
    predictor = Predictor(exported.model_dir)
    alone = np.array([predictor.predict([t])[0] for t in texts])
    np.testing.assert_allclose(prob, alone, atol=1e-6)
    # And scoring in batches of 3 gives the same table
    batched = score_texts(predictor, model, ids, texts, batch=3)
    np.testing.assert_allclose(batched.column("probability").to_numpy(), alone, atol=1e-6)
    # And the summary counts them
    assert summary["files"] == [
        {
            "input": str(source),
            "output": str(tmp_path / "out" / "scores.parquet"),
            "rows": 24,
            "positive": sum(p >= 0.5 for p in prob),
            "seconds": summary["files"][0]["seconds"],
        }
    ]
    assert (summary["model_id"], summary["rows"]) == ("run-1", 24)
    assert summary["reviews_per_second"] > 0


def test_scoring_a_folder_writes_one_parquet_per_review_file(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a folder with a .txt, a .csv, a .parquet, a note and a hidden partial upload
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text(f"{GOOD}\n{BAD}\n", encoding="utf-8")
    (inbox / "b.csv").write_text(f"id,text\nx,{GOOD}\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [BAD, GOOD, BAD]}), inbox / "c.parquet")
    (inbox / "notes.md").write_text("not reviews")
    (inbox / ".d.txt.part").write_text(GOOD)

    # When the folder is scored
    summary = score_path(inbox, _model(exported), tmp_path / "out")

    # Then each review file has its <stem>.parquet, in name order, and nothing else is written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.parquet",
        "b.parquet",
        "c.parquet",
    ]
    assert [(Path(f["input"]).name, f["rows"]) for f in summary["files"]] == [
        ("a.txt", 2),
        ("b.csv", 1),
        ("c.parquet", 3),
    ]
    assert summary["rows"] == 6 and summary["positive"] == 3
    assert pq.read_table(tmp_path / "out" / "b.parquet").column("id").to_pylist() == ["x"]
    assert pq.read_table(tmp_path / "out" / "c.parquet").column("label").to_pylist() == [
        "negative",
        "positive",
        "negative",
    ]


def test_scoring_a_folder_refuses_clashing_stems_and_writing_onto_itself(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a folder holding a.txt and a.csv
    (tmp_path / "a.txt").write_text(GOOD, encoding="utf-8")
    (tmp_path / "a.csv").write_text(f"text\n{GOOD}\n", encoding="utf-8")
    model = _model(exported)

    # When / then scoring it fails before writing: both would be a.parquet; or onto itself
    with pytest.raises(ValueError, match=r"a\.csv and a\.txt would both be scored to a\.parquet"):
        score_path(tmp_path, model, tmp_path / "out")
    with pytest.raises(ValueError, match="is the input folder"):
        score_path(tmp_path, model, tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_bad_input_file_is_named_before_the_model_loads(tmp_path: Path) -> None:
    # Given a broken .jsonl and a model whose folder does not exist
    (tmp_path / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    nowhere = ModelInfo(tmp_path / "no-model", "none", None, (), None)

    # When / then scoring it names the file and line (the model is never loaded)
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        score_path(tmp_path / "bad.jsonl", nowhere, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


# --- score_waiting --------------------------------------------------------------------------


def test_waiting_files_are_scored_moved_to_done_and_a_broken_one_set_aside(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a to-score folder with two review files, a broken one and an unrelated file
    to_score, scored = tmp_path / "to-score", tmp_path / "scored"
    to_score.mkdir()
    (to_score / "monday.txt").write_text(f"{GOOD}\n{BAD}\n", encoding="utf-8")
    (to_score / "broken.jsonl").write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    (to_score / "tuesday.csv").write_text(f"id,text\nt1,{BAD}\n", encoding="utf-8")
    (to_score / "readme.md").write_text("drop review files here")
    model = _model(exported)
    logged: list[str] = []

    # When the waiting files are scored
    results = score_waiting(to_score, scored, model, log=logged.append)

    # Then the good ones are in scored/ with the model id in the name, their inputs in done/
    assert sorted(p.name for p in scored.iterdir()) == [
        "monday.run-1.parquet",
        "tuesday.run-1.parquet",
    ]
    assert pq.read_table(scored / "tuesday.run-1.parquet").column("id").to_pylist() == ["t1"]
    assert sorted(p.name for p in (to_score / "done").iterdir()) == ["monday.txt", "tuesday.csv"]
    # And the broken one is in failed/ with its error beside it; the unrelated file stays
    assert sorted(p.name for p in (to_score / "failed").iterdir()) == [
        "broken.jsonl",
        "broken.jsonl.error.txt",
    ]
    error = (to_score / "failed" / "broken.jsonl.error.txt").read_text()
    assert "broken.jsonl:2: not valid JSON" in error
    assert sorted(p.name for p in to_score.iterdir()) == ["done", "failed", "readme.md"]
    assert [(r["input"], r["rows"]) for r in results] == [
        ("broken.jsonl", 0),
        ("monday.txt", 2),
        ("tuesday.csv", 1),
    ]
    assert "error" in results[0] and len(logged) == 3

    # When it runs again with nothing waiting / then nothing is done
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert score_waiting(to_score, scored, model) == []
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    # And a missing to-score folder is nothing to do either
    assert score_waiting(tmp_path / "none", scored, model) == []


def test_a_name_seen_before_gets_a_number_and_never_replaces_older_scores(
    exported: Exported, tmp_path: Path
) -> None:
    # Given monday.txt already scored and done, and a new monday.txt waiting
    to_score, scored = tmp_path / "to-score", tmp_path / "scored"
    to_score.mkdir()
    model = _model(exported)
    (to_score / "monday.txt").write_text(f"{GOOD}\n", encoding="utf-8")
    score_waiting(to_score, scored, model)
    first = (scored / "monday.run-1.parquet").read_bytes()
    (to_score / "monday.txt").write_text(f"{BAD}\n{BAD}\n", encoding="utf-8")

    # When the waiting files are scored
    score_waiting(to_score, scored, model)

    # Then the new file is done/monday.txt.1 and its scores monday.run-1.1.parquet
    assert sorted(p.name for p in (to_score / "done").iterdir()) == ["monday.txt", "monday.txt.1"]
    assert (scored / "monday.run-1.parquet").read_bytes() == first
    assert pq.read_table(scored / "monday.run-1.1.parquet").num_rows == 2


def test_a_crash_before_the_move_only_scores_the_file_again(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a waiting file whose move to done/ fails once (a crash after the output was written)
    to_score, scored = tmp_path / "to-score", tmp_path / "scored"
    to_score.mkdir()
    (to_score / "monday.txt").write_text(f"{GOOD}\n{BAD}\n", encoding="utf-8")
    model = _model(exported)
    import tasks.serving.score as score_module

    def crash(source: Path, dest: Path) -> None:
        raise OSError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(score_module, "_move", crash)
        with pytest.raises(OSError, match="killed"):
            score_waiting(to_score, scored, model)
    first = pq.read_table(scored / "monday.run-1.parquet")
    assert (to_score / "monday.txt").exists()

    # When the next night runs
    score_waiting(to_score, scored, model)

    # Then the file is scored again to the same, identical output and moved
    assert sorted(p.name for p in scored.iterdir()) == ["monday.run-1.parquet"]
    assert pq.read_table(scored / "monday.run-1.parquet").equals(first)
    assert [p.name for p in (to_score / "done").iterdir()] == ["monday.txt"]


# --- the Prefect tasks ----------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_score_tasks_use_default_outputs_and_publish_a_table(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a review file, a folder of them, and a champion in an artifacts folder
    (tmp_path / "reviews.txt").write_text(f"{GOOD}\n{BAD}\n", encoding="utf-8")
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "x.txt").write_text(f"{GOOD}\n", encoding="utf-8")
    models = tmp_path / "art" / "models"
    champion.switch_champion(models, _copy_export(exported, models))

    # When the file and the folder are scored with the champion, no output given
    one = run_in_flow(score_reviews, tmp_path / "reviews.txt", "champion", None, tmp_path / "art")
    many = run_in_flow(score_reviews, tmp_path / "batch", "champion", None, tmp_path / "art")

    # Then the outputs are reviews.scored.parquet and batch-scored/x.parquet
    assert one["output"] == str(tmp_path / "reviews.scored.parquet")
    assert pq.read_table(tmp_path / "reviews.scored.parquet").num_rows == 2
    assert many["output"] == str(tmp_path / "batch-scored")
    assert (tmp_path / "batch-scored" / "x.parquet").exists()
    # And the last one is published as the `scored-reviews` table
    published = Artifact.get("scored-reviews")
    assert published is not None
    assert json.loads(published.data) == [
        {
            "file": "x.txt",
            "rows": 1,
            "positive": 1,
            "model": "run-1",
            "seconds": pytest.approx(many["files"][0]["seconds"]),
        }
    ]

    # When waiting reviews are scored with the champion folder
    (tmp_path / "to-score").mkdir()
    (tmp_path / "to-score" / "night.txt").write_text(f"{BAD}\n", encoding="utf-8")
    results = run_in_flow(
        score_waiting_reviews, tmp_path / "to-score", tmp_path / "scored", models / "champion"
    )

    # Then they are scored under the champion's run id, and nothing waiting does nothing
    assert [r["output"] for r in results] == [str(tmp_path / "scored" / "night.run-1.parquet")]
    assert (
        run_in_flow(
            score_waiting_reviews, tmp_path / "to-score", tmp_path / "scored", tmp_path / "nomodel"
        )
        == []
    )
