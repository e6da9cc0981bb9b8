"""The layers import one way: config -> core -> data -> ingest/pretraining -> training ->
evaluation -> serving -> tracking -> flows (type-only imports included), and no flow module
imports another flow module but the shared pieces (`flows/shared.py`); the CLI imports all."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = (
    "config",
    "core",
    "data",
    "ingest",
    "training",
    "evaluation",
    "serving",
    "tracking",
    "flows",
)
RANK = {name: i for i, name in enumerate(ORDER)} | {"pretraining": 3}  # beside ingest


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "flows":
        return "flows"
    if parts[0] != "tasks" or len(parts) == 1:
        return None
    if parts[1] == "__init__":  # runs before every module of the package: core at most
        return "core"
    return "config" if parts[1] in ("config", "config_reference", "layout") else parts[1]


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def modules() -> list[Path]:
    return sorted([*ROOT.glob("tasks/**/*.py"), *ROOT.glob("flows/*.py")])


def test_no_import_runs_up_the_layers() -> None:
    upward = []
    for path in modules():
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        mine = layer(name)
        for line, module in imports(path):
            theirs = layer(module)
            if mine and theirs and RANK[theirs] > RANK[mine]:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {module}")
    assert upward == []


def test_flows_share_pieces_only_through_flows_shared() -> None:
    crossing = []
    for path in ROOT.glob("flows/*.py"):
        if path.name in ("cli.py", "shared.py", "__init__.py"):
            continue
        for line, module in imports(path):
            if module.startswith("flows.") and module != "flows.shared":
                crossing.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert crossing == []
