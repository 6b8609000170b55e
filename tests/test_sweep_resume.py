"""A sweep killed with SIGKILL, then run again with the same command, completes its study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import train_cli
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError
from sweep_helpers import FINISHED, load_study, sweep_args, trials_in

pytestmark = pytest.mark.slow
N_TRIALS = 3


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (KeyError, OperationalError):  # no study yet, or its file locked for a moment
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_a_killed_sweep_resumes_to_exactly_n_trials_with_none_left_running(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(names_path, tmp_path, f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.pruner=none", steps=300)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "makemore_sweep.train", *args],
        cwd=tmp_path,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed as a whole like a lost terminal
    )
    try:
        # Kill it while trial 0 is done and trial 1 is training.
        wait_for(
            lambda: trials_in(load_study(tmp_path), TrialState.COMPLETE) and trials_in(load_study(tmp_path), TrialState.RUNNING),
            timeout=300,
            what="a completed trial and a running one",
        )
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
