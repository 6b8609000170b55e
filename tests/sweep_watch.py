"""Watching a running sweep from a test: its study's SQLite file read-only, its trial folders."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import STUDY

from makemore_sweep.model.checkpoints import LAST_CHECKPOINT


def running_trials(database: Path) -> tuple[int, dict[int, dict[str, Any]]]:
    """(complete trials, {number: owner} of RUNNING trials), read-only: the test must not create tables."""
    if not database.is_file():
        return 0, {}
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            complete = db.execute(
                "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
            ).fetchone()[0]
            rows = db.execute(
                "SELECT t.number, a.value_json FROM trials t LEFT JOIN trial_user_attributes a "
                "ON a.trial_id = t.trial_id AND a.key = 'sweep_owner' WHERE t.state = 'RUNNING'"
            ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or busy
        return 0, {}
    return complete, {number: json.loads(owner) if owner else {} for number, owner in rows}


def wait_for_running_trial_with_checkpoint(
    workdir: Path,
    sweep: subprocess.Popen[Any],
    timeout: float,
    after_complete: int = 0,
    owned_by: Callable[[dict[str, Any]], bool] = lambda owner: True,
) -> tuple[int, dict[str, Any]]:
    """A RUNNING trial that has written checkpoints/last.ckpt, and its owner (one `owned_by`
    accepts); fails on timeout."""
    database = workdir / "studies" / f"{STUDY}.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sweep.poll() is None:
        complete, running = running_trials(database)
        for number, owner in running.items():
            if (
                complete >= after_complete
                and owner
                and owned_by(owner)
                and (workdir / "multirun" / STUDY / f"trial_{number}" / LAST_CHECKPOINT).is_file()
            ):
                return number, owner
        time.sleep(0.1)
    pytest.fail(f"the sweep never had a running trial with a checkpoint (exit code {sweep.poll()})")
