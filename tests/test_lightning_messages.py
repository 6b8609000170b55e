"""Lightning's console lines ("GPU available", "`Trainer.fit` stopped") are printed once.

Under makemore-train, Hydra's job logging (console and the run's train.log) prints them; the
stderr handler the `lightning` package adds at import would print each a second time
(training/trainer_factory.py). Where nothing configured logging, as in a notebook kernel or a
plain script, Lightning's own handler stays and prints them, once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import train_cli, user_shell_env

pytestmark = pytest.mark.slow

FIT_STOPPED = "`Trainer.fit` stopped: `max_steps=30` reached."
SHORT = ["trainer.max_steps=30", "trainer.val_every_n_steps=30", "logger=none"]


def test_makemore_train_prints_each_lightning_line_once(tmp_path: Path, names_path: Path) -> None:
    result = train_cli([*SHORT, f"data.path={names_path}"], cwd=tmp_path, env=user_shell_env())
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert output.count(FIT_STOPPED) == 1, output
    assert output.count("GPU available:") == 1, output
    [log] = (tmp_path / "outputs").glob("*/*/train.log")
    assert log.read_text().count(FIT_STOPPED) == 1  # and the run's log keeps them
    assert (
        "makemore run · " in result.stdout and "dev loss (best)" in result.stdout
    )  # the run's own summary


def test_train_from_python_leaves_logging_as_it_was(tmp_path: Path, names_path: Path) -> None:
    """In a process whose logging nobody configured (a notebook kernel's root logger has no
    handlers either), train() prints Lightning's lines once, through Lightning's own handler,
    and leaves the handlers as they were."""
    script = f"""
import logging
from makemore_sweep import train
def handlers():
    return [type(h).__name__ for h in logging.getLogger().handlers], [type(h).__name__ for h in logging.getLogger("lightning").handlers]
train({[*SHORT, f"data.path={names_path}"]!r}, output_dir="run")
print("handlers after:", handlers())
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=user_shell_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.stdout + result.stderr).count(FIT_STOPPED) == 1
    assert FIT_STOPPED in result.stderr  # by Lightning's own handler, on stderr
    assert "handlers after: ([], ['StreamHandler'])" in result.stdout
