"""The configuration reference (docs/config.md), generated from `PipelineConfig`: every field,
its flag, default, roles and meaning. `python -m tasks.config_reference > docs/config.md`
(`make docs`) writes it; a test checks that the file is current."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticUndefined

from tasks.config import DEFAULT_SOURCE, PipelineConfig

# Defaults read from the environment when a config is made: named, not evaluated here.
_FROM_ENVIRONMENT = {
    "source": f"`IMDB_SOURCE`, else `{DEFAULT_SOURCE}`",
    "sha256": "`IMDB_SHA256`, else none",
    "notify_url": "`IMDB_NOTIFY_URL`, else none",
}


def _default(name: str, info: Any) -> str:
    if name in _FROM_ENVIRONMENT:
        return _FROM_ENVIRONMENT[name]
    if info.default_factory is not None:
        raise ValueError(f"say in _FROM_ENVIRONMENT where the default of {name!r} comes from")
    value = info.default
    if value is PydanticUndefined:
        return "(required)"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "none" if not value else f"`{','.join(map(str, value))}`"
    return f"`{json.dumps(value) if isinstance(value, bool) else value}`"


def _flag(name: str, info: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if info.annotation is bool:
        return f"`{flag}` / `--no-{flag[2:]}`"
    return f"`{flag}`"


def render() -> str:
    rows = []
    for name, info in PipelineConfig.model_fields.items():
        roles = ", ".join((info.json_schema_extra or {}).get("roles") or ())  # type: ignore[union-attr]
        meaning = (info.description or name.replace("_", " ")).replace("|", "\\|")
        rows.append(
            f"| `{name}` | {_flag(name, info)} | {_default(name, info)} | {roles} | {meaning} |"
        )
    return "\n".join(
        [
            "# Configuration reference",
            "",
            "Generated from `tasks/config.py` by `make docs` (`python -m tasks.config_reference`);",
            "`tests/tasks/test_config_reference.py` checks that it is current. Each field is a",
            "flag of `train` and `nightly` (and `prepare` for the `prepare` role) and a key of the",
            "YAML file given with `--config`. Roles: `prepare` (a flag of `prepare`), `tokenize`",
            "(part of the data fingerprint), `pretrain` (the word vectors depend on it),",
            "`placement` and `nightly` (not part of the config digest: where a run runs or",
            "writes, and how the nightly takes in data and decides).",
            "",
            "| field | flag | default | roles | meaning |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(render(), end="")
