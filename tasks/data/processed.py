"""A tokenised dataset folder (data/processed/<fingerprint>/): its types and verified loading.

Kept apart from the tokenizer so that the stages that only read the data (training, runs,
export) import neither the tokenizer nor pandas.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, create_model

from tasks.config import TOKENIZE, PipelineConfig
from tasks.core.atomic import verified_manifest

LABELLED = ("train", "validation", "test")
UNLABELLED = "unsup"  # the archive's aclImdb/train/unsup reviews: text only, for pretraining
SPLITS = (*LABELLED, UNLABELLED)
MANIFEST = "manifest.json"
VOCABULARY = "vocab.txt"

log = logging.getLogger(__name__)

# The config's TOKENIZE fields as they are declared there: the same defaults and validation.
_TokenizeFields = create_model(
    "_TokenizeFields",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    **{
        name: (PipelineConfig.model_fields[name].annotation, PipelineConfig.model_fields[name])
        for name in PipelineConfig.fields_with(TOKENIZE)
    },
)


class TokenizeParams(_TokenizeFields):  # type: ignore[misc, valid-type]
    """What the tokenised output depends on besides the archive (part of the fingerprint)."""

    @classmethod
    def from_config(cls, config: PipelineConfig) -> TokenizeParams:
        return cls(**config.model_dump(include=set(cls.model_fields)))


def fingerprint(source_sha256: str, params: TokenizeParams, incoming: Sequence[str] = ()) -> str:
    """Short digest of everything the output depends on: the archive, the tokenizer and its
    parameters, and the accepted incoming files (by content checksum) added to the archive;
    the name of the data folder."""
    from tasks.data.text import TOKENIZER_VERSION  # here: readers need not import the rules

    key: dict[str, Any] = {
        "source_sha256": source_sha256,
        "tokenizer_version": TOKENIZER_VERSION,
        "params": params.model_dump(),
        "splits": list(SPLITS),
    }
    if incoming:  # absent for the archive alone: its data versions keep their fingerprints
        key["incoming"] = sorted(incoming)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProcessedData:
    """A complete tokenised dataset folder."""

    path: Path
    fingerprint: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    undecodable_bytes: int = 0
    # sha256 of each accepted incoming file whose rows this version adds to the archive's
    incoming: tuple[str, ...] = ()

    def split_path(self, split: str) -> Path:
        return self.path / f"{split}.parquet"

    @property
    def vocabulary_path(self) -> Path:
        return self.path / VOCABULARY

    def vocabulary(self) -> list[str]:
        """The words in id order (line i of vocab.txt is id i)."""
        return self.vocabulary_path.read_text(encoding="utf-8").splitlines()


def load_processed(path: Path) -> ProcessedData | None:
    """The dataset at `path` if it is complete and every file matches its manifest, else None
    (a folder that exists but does not verify is named in a warning)."""
    manifest, damage = verified_manifest(path, MANIFEST)
    if manifest is None:
        if path.exists():
            log.warning("tokenised data %s is damaged: %s", path, damage)
        return None
    try:
        return ProcessedData(
            path,
            manifest["fingerprint"],
            manifest["counts"],
            manifest["undecodable_bytes"],
            tuple(manifest.get("incoming", ())),
        )
    except KeyError as exc:
        log.warning("tokenised data %s is damaged: manifest has no %s", path, exc)
        return None
