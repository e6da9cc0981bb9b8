"""The nightly flow: new labelled reviews in, a challenger only when something changed, the
champion replaced only by a real improvement, lineage in the registry, crash-safe decisions."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect.artifacts import Artifact

from flows.nightly import nightly
from flows.resume import resume
from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.core.run_folder import RunFolder
from tasks.serving import champion, promotion, registry
from tests.alert_receiver import Receiver
from tests.imdb_fixtures import review_text, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_server")


@dataclass
class FirstNight:
    """The data and artifacts after a first nightly on the small archive (promoted night-1);
    tests continue from copies of them."""

    root: Path
    config: PipelineConfig
    summary: dict

    def copy(self, tmp_path: Path, folders=("data", "art"), **overrides) -> PipelineConfig:
        for name in folders:
            shutil.copytree(self.root / name, tmp_path / name, symlinks=True)
        return self.config.model_copy(
            update={"data_dir": tmp_path / "data", "artifacts_dir": tmp_path / "art", **overrides}
        )


@pytest.fixture(scope="module")
def first_night(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> FirstNight:
    root = tmp_path_factory.mktemp("nightly")
    config = tiny_config(
        root,
        source=str(small_archive),
        sha256=file_sha256(small_archive),
        epochs=2,
        max_review_chars=2000,
    )
    return FirstNight(root, config, nightly(config, run_id="night-1"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def good_rows(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": f"new-{seed}-{i}",
            "text": review_text(rng, i % 2 == 1, words=50),
            "label": "pos" if i % 2 else "neg",
            "movie": f"tt77{seed:02d}{i // 3:03d}",
        }
        for i in range(n)
    ]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def events(config: PipelineConfig) -> list[tuple[str, str]]:
    return [
        (e["event"], e["run_id"]) for e in registry.read_events(config.artifacts_dir / "models")
    ]


def test_first_night_trains_and_promotes(first_night: FirstNight) -> None:
    summary, config = first_night.summary, first_night.config
    assert summary["trained"] is True and summary["run_id"] == "night-1"
    assert summary["champion"]["promoted"] is True
    assert summary["champion"]["reason"] == "no champion yet"
    models = config.artifacts_dir / "models"
    assert os.readlink(models / "champion") == "night-1"
    assert events(config) == [
        ("candidate", "night-1"),
        ("decision", "night-1"),
        ("promotion", "night-1"),
    ]
    assert RunFolder(config.artifacts_dir / "runs" / "night-1").read_info()["nightly"] == {
        "keep_runs": 5
    }
    # And the run's report, in the run folder and the export, shows the night's decision
    page = (config.artifacts_dir / "runs" / "night-1" / "report.html").read_text()
    assert "Champion decision" in page and "no champion yet" in page
    assert (models / "night-1" / "report.html").read_text() == page


def test_a_night_without_new_data_trains_nothing_and_says_why(
    first_night: FirstNight, tmp_path: Path
) -> None:
    # Given the state after the first night, and a binary file dropped into incoming/
    config = first_night.copy(tmp_path)
    rng = np.random.default_rng(0)
    binary = config.incoming_path / "photo.jsonl"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(4000))

    # When the next night runs
    summary = nightly(config, run_id="night-2")

    # Then it trained nothing: same data version and settings as the champion
    assert summary["trained"] is False
    assert "night-1" in summary["reason"] and "nothing new" in summary["reason"]
    assert summary["data_version"] == first_night.summary["data_version"]
    assert names(config.artifacts_dir / "runs") == ["night-1"]
    assert os.readlink(config.artifacts_dir / "models" / "champion") == "night-1"
    assert len(events(config)) == 3  # no candidate, no decision
    skipped = Artifact.get("nightly-skipped")
    assert skipped is not None and "nothing new" in str(skipped.data)
    # And the binary file was quarantined whole with an error naming it, and the night completed
    (unreadable,) = summary["incoming"]
    assert unreadable["status"] == "unreadable" and "photo.jsonl" in unreadable["error"]
    quarantine = config.data_dir / "quarantine"
    assert any(
        n.startswith("photo.jsonl.") and n.endswith(".summary.json") for n in names(quarantine)
    )


def test_new_reviews_with_bad_rows_train_on_a_new_version_and_quarantine_exactly_the_bad_ones(
    first_night: FirstNight, tmp_path: Path
) -> None:
    # Given 40 new good reviews and five bad rows, one of each kind, one a leaked test review
    config = first_night.copy(tmp_path)
    test_text = pq.read_table(
        next((config.data_dir / "processed").glob("*/test.parquet")), columns=["text"]
    )["text"][0].as_py()
    good = good_rows(40)
    bad = [
        {"id": "b-empty", "text": "   ", "label": "pos"},
        {"id": "b-label", "text": "an honest review of a film", "label": "maybe"},
        {"id": "b-dup", "text": good[0]["text"].upper(), "label": "neg"},
        {"id": "b-long", "text": "long " * 500, "label": "pos"},
        {"id": "b-leak", "text": "  " + test_text.replace("<br />", " "), "label": "pos"},
    ]
    new_file = write_jsonl(config.incoming_path / "reviews-1.jsonl", good[:20] + bad + good[20:])

    # When the next night runs
    summary = nightly(config, run_id="night-2")

    # Then it trained a challenger on a new data version that records the accepted file, from
    # scratch: the new reviews are too large a share of the text to keep what the archive taught
    assert summary["trained"] is True and summary["warm_start"] is False
    assert summary["data_version"] != first_night.summary["data_version"]
    info = RunFolder(config.artifacts_dir / "runs" / "night-2").read_info()
    assert info["data_incoming"] == [file_sha256(new_file)]
    train = pq.read_table(Path(info["data_path"]) / "train.parquet", columns=["review_id"])
    validation = pq.read_table(
        Path(info["data_path"]) / "validation.parquet", columns=["review_id"]
    )
    added = [
        r
        for t in (train, validation)
        for r in t.column("review_id").to_pylist()
        if r.startswith("incoming/")
    ]
    assert len(added) == 40
    # And the quarantine report lists exactly the five bad rows, each with its reason
    (report,) = summary["incoming"]
    assert (report["status"], report["accepted_rows"], report["rejected_rows"]) == (
        "quarantined",
        40,
        5,
    )
    quarantined = (
        config.data_dir / "quarantine" / f"reviews-1.jsonl.{file_sha256(new_file)[:12]}.jsonl"
    )
    rows = [json.loads(line) for line in quarantined.read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rows} == {
        "b-empty": "empty_text",
        "b-label": "unknown_label",
        "b-dup": "duplicate_text",
        "b-long": "too_long",
        "b-leak": "test_leak",
    }
    # And a decision on the same held-out reviews was recorded, with both data versions
    decision = summary["champion"]
    assert (decision["challenger"], decision["champion"]) == ("night-2", "night-1")
    assert decision["challenger_data"] == summary["data_version"]
    assert decision["champion_data"] == first_night.summary["data_version"]
    assert decision["newer_data"] is True and decision["p_value"] is not None
    assert events(config)[3:5] == [("candidate", "night-2"), ("decision", "night-2")]

    # When a night runs again with the same file waiting (renamed: same content)
    new_file.rename(new_file.with_name("renamed.jsonl"))
    again = nightly(config, run_id="night-3")

    # Then the file is not ingested twice, the data version is unchanged, and nothing trains:
    # night-2 was trained and decided on this very version and settings
    assert again["incoming"][0]["status"] == "already ingested"
    assert again["data_version"] == summary["data_version"]
    assert again["trained"] is False and "night-2" in again["reason"]


def test_a_challenger_worse_than_the_champion_is_not_promoted(
    first_night: FirstNight, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given new data, and a challenger that scores far below the champion on the held-out rows
    config = first_night.copy(tmp_path)
    write_jsonl(config.incoming_path / "more.jsonl", good_rows(30, seed=8))

    def correct_on(model_dir: Path, parquet: Path) -> np.ndarray:
        n = pq.read_metadata(parquet).num_rows
        right = n if model_dir.name == "night-1" else n // 2
        return np.arange(n) < right

    monkeypatch.setattr(promotion, "correct_on", correct_on)

    # When the night runs
    summary = nightly(config, run_id="night-2")

    # Then the challenger is kept out, though trained on newer data, and the champion stays
    decision = summary["champion"]
    assert summary["trained"] is True and decision["promoted"] is False
    assert decision["newer_data"] is True and "worse by over" in decision["reason"]
    assert decision["challenger_accuracy"] < decision["champion_accuracy"]
    assert os.readlink(config.artifacts_dir / "models" / "champion") == "night-1"
    assert events(config)[3:] == [("candidate", "night-2"), ("decision", "night-2")]
    published = Artifact.get("champion-decision")
    assert published is not None and "Kept the champion" in str(published.data)


@pytest.mark.parametrize("crash_in", ["correct_on", "switch_champion"])
def test_a_crash_between_training_and_promotion_is_resumed_with_exactly_one_decision(
    first_night: FirstNight,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    crash_in: str,
    request: pytest.FixtureRequest,
) -> None:
    # Given new data, two models equally good on the held-out rows (the newer data wins), a
    # crash at `crash_in` (while scoring for the decision, or after recording it), and alerts
    receiver = Receiver()
    request.addfinalizer(receiver.stop)
    config = first_night.copy(tmp_path, notify_url=receiver.url)
    write_jsonl(config.incoming_path / "more.jsonl", good_rows(30, seed=9))
    models = config.artifacts_dir / "models"
    links: list[str | None] = []

    def correct_on(model_dir: Path, parquet: Path) -> np.ndarray:
        links.append(os.readlink(models / "champion"))
        return np.ones(pq.read_metadata(parquet).num_rows, dtype=bool)

    real = {"correct_on": correct_on, "switch_champion": champion.switch_champion}

    def crash(*args, **kwargs):
        links.append(os.readlink(models / "champion"))
        raise RuntimeError(f"worker lost in {crash_in}")

    monkeypatch.setattr(promotion, "correct_on", correct_on)
    monkeypatch.setattr(promotion, crash_in, crash)

    # When the night crashes there
    with pytest.raises(RuntimeError, match="worker lost"):
        nightly(config, run_id="night-2")

    # Then the run is trained and exported, and the champion link still names a valid model
    run_dir = config.artifacts_dir / "runs" / "night-2"
    info = RunFolder(run_dir).read_info()
    assert info["status"] == "completed" and Path(info["model_dir"]).is_dir()
    assert champion.current_champion(models) == (models / "night-1").resolve()

    # When the automatic resume (as the trigger starts it: by the crashed flow run's id) runs
    monkeypatch.setattr(promotion, crash_in, real[crash_in])
    summary = resume(flow_run_id=info["flow_run_ids"][0], automatic=True)

    # Then the night is concluded: exactly one decision for night-2, and it was carried out
    assert summary["champion"]["promoted"] is True and summary["champion"]["newer_data"]
    night_2 = [kind for kind, run in events(config) if run == "night-2"]
    assert night_2 == ["candidate", "decision", "promotion"]
    assert champion.current_champion(models) == (models / "night-2").resolve()
    # And the link named a model at every step: night-1 until the switch
    assert set(links) == {"night-1"}
    # And the operator heard of the failure, then of the promotion, once: a later resume of the
    # concluded night reads the recorded promotion and says nothing
    resume(flow_run_id=info["flow_run_ids"][0], automatic=True)
    failed, promoted = receiver.received()
    assert (failed["event"], failed["run_id"]) == ("failed", "night-2")
    assert f"worker lost in {crash_in}" in failed["message"]
    assert (promoted["event"], promoted["new_model"], promoted["old_model"]) == (
        "promoted",
        "night-2",
        "night-1",
    )


def test_a_night_with_little_new_text_reuses_the_vectors_and_the_champion_also_when_resumed(
    first_night: FirstNight, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.training import train

    # Given a champion trained with these settings (on the archive's data already prepared),
    # new reviews that count as a small share, and training that dies at once
    config = first_night.copy(tmp_path, folders=("data",), word_vectors_reuse_share=0.9)
    first = nightly(config, run_id="night-1")
    assert first["warm_start"] is False  # no champion yet
    write_jsonl(config.incoming_path / "more.jsonl", good_rows(6, seed=10))
    real_train = train.train

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost before the first checkpoint")

    monkeypatch.setattr(train, "train", crash)
    with pytest.raises(RuntimeError, match="worker lost"):
        nightly(config, run_id="night-2")

    # When the automatic resume trains the run afresh
    monkeypatch.setattr(train, "train", real_train)
    info = RunFolder(config.artifacts_dir / "runs" / "night-2").read_info()
    summary = resume(flow_run_id=info["flow_run_ids"][0], automatic=True)

    # Then the run started from the champion's weights, for the warm start's epochs only
    champion_dir = config.artifacts_dir / "models" / "night-1"
    assert info["warm_start"]["model"] == str(champion_dir.resolve() / "model.keras")
    assert summary["epochs_completed"] == config.warm_start_epochs < config.epochs
    card = json.loads((Path(summary["model_dir"]) / "model-card.json").read_text())
    assert card["warm_started_from"] == "night-1"
    # And the night and its resume both used the archive's vectors, carried over: no vectors
    # were learnt on the new version
    manifests = [
        json.loads(p.read_text()) for p in (config.data_dir / "pretrained").glob("*/manifest.json")
    ]
    new_version = info["data_fingerprint"]
    learnt = {m["data_fingerprint"] for m in manifests if m.get("reused_from") is None}
    carried = [m for m in manifests if m.get("reused_from")]
    assert new_version not in learnt
    assert [m["data_fingerprint"] for m in carried] == [new_version]


def test_a_file_with_flipped_labels_is_held_with_an_alert_until_an_operator_releases_it(
    first_night: FirstNight, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tasks.ingest import held, ledger

    # Given 40 new reviews whose labels are all flipped, and an alert receiver
    receiver = Receiver()
    request.addfinalizer(receiver.stop)
    config = first_night.copy(tmp_path, notify_url=receiver.url)
    rows = [{**r, "label": "neg" if r["label"] == "pos" else "pos"} for r in good_rows(40)]
    flipped = write_jsonl(config.incoming_path / "flipped.jsonl", rows)

    # When the next night runs
    summary = nightly(config, run_id="night-2")

    # Then the file is held on the champion's agreement, with its figures, and nothing trains
    (report,) = summary["incoming"]
    assert (report["status"], report["held_rows"], report["accepted_rows"]) == ("held", 40, 0)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["champion_agreement"]
    assert failed[0]["value"] < 0.5 and failed[0]["reference"] > 0.8
    assert summary["trained"] is False
    assert summary["data_version"] == first_night.summary["data_version"]
    table = Artifact.get("incoming-data")
    assert table is not None and "held" in str(table.data) and "champion" in str(table.data)
    # And one `held` alert names the file and the failed check
    (alert,) = [b for b in receiver.received() if b["event"] == "held"]
    assert alert["file"] == "flipped.jsonl" and alert["sha256"] == file_sha256(flipped)
    assert alert["failed_checks"][0]["name"] == "champion_agreement"

    # When an operator releases it, then the next night trains on a version with its rows
    held.decide(config.data_dir, "flipped.jsonl", ledger.RELEASE, "the labels are right")
    again = nightly(config, run_id="night-3")
    assert again["incoming"][0]["status"] == "already ingested"
    assert again["trained"] is True
    assert RunFolder(config.artifacts_dir / "runs" / "night-3").read_info()["data_incoming"] == [
        file_sha256(flipped)
    ]
    assert not [b for b in receiver.received() if b["event"] == "held"]  # not again
