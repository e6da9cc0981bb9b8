"""The environment a run records: versions, lock, commit, platform; and what changed."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import environment


def test_the_environment_names_python_packages_lock_commit_and_platform(tmp_path: Path) -> None:
    # Given a lock file
    lock = tmp_path / "dev.lock"
    lock.write_text("keras==3.15.0 --hash=sha256:00\n")

    # When the environment is described in this checkout
    env = environment.describe(lock_file=lock)

    # Then it holds what this process runs with
    assert env["python"] == platform.python_version()
    for name in ("keras", "prefect", "pandas", "pyarrow", "gensim", "numpy"):
        assert env["packages"][name] == importlib.metadata.version(name)
    assert "tensorflow-cpu" in env["packages"] or "tensorflow" in env["packages"]
    assert env["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    head = subprocess.run(
        ["git", "-C", str(environment.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert env["git_commit"] == (head or None)
    assert env["platform"] == platform.platform()
    assert env["tf_intra_op_threads"] == os.environ["TF_NUM_INTRAOP_THREADS"]


def test_outside_a_checkout_and_without_a_lock_they_are_null(tmp_path: Path) -> None:
    env = environment.describe(lock_file=tmp_path / "none.lock", root=tmp_path)
    assert (env["lock_sha256"], env["git_commit"]) == (None, None)


def test_differences_name_each_change_and_none_for_an_unrecorded_run() -> None:
    now = environment.describe()
    before = {**now, "python": "3.11.0", "packages": {**now["packages"], "numpy": "1.0"}}
    before["packages"].pop("gensim")
    found = environment.differences(before, now)
    assert f"python 3.11.0 -> {now['python']}" in found
    assert f"numpy 1.0 -> {now['packages']['numpy']}" in found
    assert f"gensim None -> {now['packages']['gensim']}" in found
    assert len(found) == 3
    assert environment.differences(None, now) == []
    assert environment.differences({**now, "tf_intra_op_threads": "0"}, now) == [
        f"TF_NUM_INTRAOP_THREADS 0 -> {now['tf_intra_op_threads']}"
    ]
    unrecorded = {k: v for k, v in now.items() if k != "tf_intra_op_threads"}  # an older run
    assert environment.differences(unrecorded, now) == []
    assert environment.differences({**now, "executable": "/elsewhere/python"}, now) == []


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0"), ("2", "2")])
def test_importing_the_package_gives_tensorflow_one_thread_per_op_unless_set(
    given: str | None, expected: str
) -> None:
    # Given an environment without TF_NUM_INTRAOP_THREADS, or with a value of the user's
    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
    if given is not None:
        env["TF_NUM_INTRAOP_THREADS"] = given

    # When a process imports the package
    out = subprocess.run(
        [sys.executable, "-c", "import os, tasks; print(os.environ['TF_NUM_INTRAOP_THREADS'])"],
        env=env,
        cwd=environment.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    # Then TensorFlow, started after it, is told 1 thread per op, or the user's value
    assert out.stdout.strip() == expected


def _locked(lock: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) of each pin in a uv/pip-tools lock file."""
    import re

    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(
            r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line
        )
        if m:
            pins[m.group(1).lower()] = (m.group(2), m.group(3))
    return pins


def test_the_installed_packages_are_exactly_the_lock_s() -> None:
    # Given the lock `make install` installs from (versions and hashes)
    from packaging.markers import Marker

    pins = _locked(environment.LOCK_FILE)
    assert len(pins) > 100 and "keras" in pins

    # Then every pin that applies to this platform is installed at exactly its version
    wrong = {}
    for name, (version, marker) in pins.items():
        if marker and not Marker(marker).evaluate():
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "installed packages differ from the lock: run `make install`"


def test_the_locks_cover_every_declared_dependency() -> None:
    import re
    import tomllib

    project = tomllib.loads((environment.ROOT / "pyproject.toml").read_text())["project"]
    for lock, declared in (
        ("default.lock", project["dependencies"]),
        ("dev.lock", project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        pins = _locked(environment.ROOT / "requirements" / lock)
        names = {re.match(r"[A-Za-z0-9_.\-]+", d).group(0).lower() for d in declared}
        assert names <= set(pins), f"{lock} lacks {names - set(pins)}: run `make lock`"
