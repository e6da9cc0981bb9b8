"""The data folder's layout (`data_dir`, default `data/`): one name per subfolder, here only.

raw/                 the downloaded archive (never edited)
processed/<fp>/      a tokenised data version, named by its fingerprint
pretrained/<key>/    word vectors, named by what they were learnt from
incoming/            new labelled-review files (never edited; `incoming_dir` moves it)
accepted/<sha16>/    the accepted rows of an incoming file
held/<sha16>/        the rows of a file the batch checks held
rejected/<sha16>/    the rows of a held file an operator rejected
quarantine/          rejected rows, unreadable files, the ingest ledger
to-score/            reviews the nightly scores (`to_score_dir` moves it)
scored/              what it scored
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def pretrained(self) -> Path:
        return self.root / "pretrained"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def accepted(self) -> Path:
        return self.root / "accepted"

    @property
    def held(self) -> Path:
        return self.root / "held"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def to_score(self) -> Path:
        return self.root / "to-score"

    @property
    def scored(self) -> Path:
        return self.root / "scored"
