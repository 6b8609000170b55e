"""A sweep killed with SIGKILL, then run again with the same command, completes its study."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import train_cli
from optuna.trial import TrialState
from sweep_helpers import FINISHED, STUDY, load_study, sweep_args, trials_in

pytestmark = pytest.mark.slow
N_TRIALS = 3


def trial_states(database: Path) -> list[str]:
    """States of the study's trials, read-only: the test must not create Optuna's tables itself."""
    if not database.is_file():
        return []
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            return [state for (state,) in db.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # tables not created yet
        return []


def wait_until_one_done_and_one_running(database: Path, sweep: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sweep.poll() is None:
        states = trial_states(database)
        if "COMPLETE" in states and "RUNNING" in states:
            return
        time.sleep(0.1)
    pytest.fail("the sweep never had a completed trial and a running one at the same time")


def test_a_killed_sweep_resumes_to_exactly_n_trials_with_none_left_running(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(names_path, tmp_path, f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.pruner=none", steps=300)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "makemore_sweep.cli.train", *args],
        cwd=tmp_path,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed as a whole like a lost terminal
    )
    try:
        # Kill it while trial 0 is done and trial 1 is training.
        wait_until_one_done_and_one_running(tmp_path / "studies" / f"{STUDY}.db", sweep, timeout=300)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    before = load_study(tmp_path)
    assert len(trials_in(before, TrialState.RUNNING)) == 1
    completed_before = {t.number: t.value for t in trials_in(before, TrialState.COMPLETE)}

    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]

    after = load_study(tmp_path)
    assert len(trials_in(after, *FINISHED)) == N_TRIALS
    assert trials_in(after, TrialState.RUNNING) == []
    [killed] = trials_in(after, TrialState.FAIL)
    assert "abandoned" in killed.user_attrs["fail_reason"]
    # Completed trials were kept, not redone.
    assert {t.number: t.value for t in trials_in(after, TrialState.COMPLETE) if t.number in completed_before} == completed_before
    assert f"[sweep] trial {killed.number} FAIL (abandoned" in result.stdout
    assert "resuming: 1 finished" in result.stdout
