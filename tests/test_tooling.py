"""Packaging and tooling: the optional extras, what a plain install still does, and CI's order.

`psycopg2-binary` (extra `postgres`) and `optuna-dashboard` (extra `dashboard`) are optional;
the `dev` extra pulls both in, so `make test` and CI keep testing them. Without them, training
and a local SQLite sweep work, and the dashboard says in one sentence which extra to install.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from makemore_sweep.cli import dashboard as dashboard_cli

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
OPTIONAL = {"psycopg2-binary": "postgres", "optuna-dashboard": "dashboard"}


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_optional_libraries_are_extras_that_the_dev_install_pulls_in() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    base = requirement_names(project["dependencies"])
    for package, extra in OPTIONAL.items():
        assert package not in base
        assert package in requirement_names(extras[extra])
    assert "optuna-integration" not in base  # nothing imports it
    assert "makemore-sweep[postgres,dashboard]" in extras["dev"]
    assert {"mypy", "ruff"} <= requirement_names(extras["dev"])


def test_ci_lints_before_it_tests() -> None:
    commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip().startswith("make ")
    ]
    assert [c.split()[1] for c in commands] == ["lint", "test"]


def test_the_dashboard_without_its_extra_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails: not installed
    with pytest.raises(SystemExit) as exited:
        dashboard_cli.main(["--storage", f"sqlite:///{tmp_path}/study.db"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: the dashboard needs optuna-dashboard: pip install 'makemore-sweep[dashboard]'\n"
    )
    assert not (tmp_path / "study.db").exists()  # it stopped before opening anything


BLOCKED_IMPORTS = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("psycopg2", "psycopg", "optuna_dashboard"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
import makemore_sweep.cli.train, makemore_sweep.cli.train_job, makemore_sweep.cli.report
import hydra_plugins.makemore_sweep_plugins
from makemore_sweep.sweeper.storage import open_storage
open_storage(sys.argv[1])
print("ok")
"""


def test_the_entry_points_import_and_open_an_sqlite_study_without_the_extras(
    tmp_path: Path,
) -> None:
    """The training, sweep and report entry points import, and an SQLite study opens, with
    neither PostgreSQL driver nor optuna-dashboard importable."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS, f"sqlite:///{tmp_path}/study.db"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / "study.db").is_file()


def test_the_gpu_check_script_parses_and_refuses_bad_arguments_in_one_sentence(
    tmp_path: Path,
) -> None:
    """scripts/gpu_check.sh is run as it is by the next session lent a GPU; its steps are run
    here with --device cpu by hand (BENCHMARKS.md), too slow for every test run."""
    script = REPO_ROOT / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    for args, said in (
        ([], "--out DIR is missing"),
        (["--device", "tpu", "--out", str(tmp_path)], "--device tpu is not cuda or cpu"),
        (["--out", str(tmp_path), "--fast"], "unknown argument --fast"),
    ):
        result = subprocess.run(
            ["bash", str(script), *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and said in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
