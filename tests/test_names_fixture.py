"""Where the tests find names.txt, and what they do without one (skip on a laptop, fail in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from makemore_sweep.data.names_file import NAMES_ENV, checkout_names_file

A_TEST_NEEDING_NAMES = "tests/test_data_validation.py::test_lecture_split_sizes_on_names_txt"


def test_env_then_checkout_then_shared_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout, shared = tmp_path / "checkout", tmp_path / "shared" / "data" / "names.txt"
    monkeypatch.delenv(NAMES_ENV, raising=False)
    assert checkout_names_file(checkout) is None
    shared.parent.mkdir(parents=True)
    shared.write_text("emma\n")
    assert checkout_names_file(checkout) == shared
    own = checkout / "data" / "names.txt"
    own.parent.mkdir(parents=True)
    own.write_text("olivia\n")
    assert checkout_names_file(checkout) == own
    monkeypatch.setenv(NAMES_ENV, str(tmp_path / "elsewhere.txt"))
    assert checkout_names_file(checkout) is None  # a named file that is missing is not replaced


@pytest.mark.parametrize(("ci", "outcome"), [(None, "1 skipped"), ("true", "1 error")])
def test_without_names_txt_tests_skip_with_a_reason_or_fail_in_ci(
    tmp_path: Path, ci: str | None, outcome: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env[NAMES_ENV] = str(tmp_path / "missing" / "names.txt")
    if ci:
        env["CI"] = ci
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            A_TEST_NEEDING_NAMES,
        ],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert outcome in result.stdout, result.stdout[-2000:]
    assert (result.returncode != 0) == bool(ci)
    assert f"names.txt not found at {tmp_path / 'missing' / 'names.txt'}" in result.stdout
