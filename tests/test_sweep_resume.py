"""A sweep killed with SIGKILL, then run again with the same command, continues its interrupted trial."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import train_cli, train_cli_running
from optuna.trial import TrialState
from sweep_helpers import FINISHED, STUDY, load_study, sweep_args, trials_in
from sweep_watch import wait_for_running_trial_with_checkpoint

from makemore_sweep.training.metrics_file import read_metrics

pytestmark = pytest.mark.slow
N_TRIALS = 3


def test_a_killed_sweep_resumes_to_exactly_n_trials_continuing_the_interrupted_one(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    # One worker in the sweep's own process: killing the sweep kills the trial it trains.
    args = sweep_args(
        names_path,
        tmp_path,
        f"hydra.sweeper.n_trials={N_TRIALS}",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.workers=1",
        steps=300,
    )
    # Its own process group, killed as a whole like a lost terminal.
    with train_cli_running(
        args, tmp_path, run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as sweep:
        # Kill it while trial 0 is done and trial 1 has written a checkpoint.
        number, _ = wait_for_running_trial_with_checkpoint(
            tmp_path, sweep, after_complete=1, timeout=300
        )
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    before = load_study(tmp_path)
    assert [t.number for t in trials_in(before, TrialState.RUNNING)] == [number]
    completed_before = {t.number: t.value for t in trials_in(before, TrialState.COMPLETE)}

    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]

    after = load_study(tmp_path)
    assert len(trials_in(after, *FINISHED)) == len(after.trials) == N_TRIALS
    # The interrupted trial was continued, not thrown away: same number, same folder, from its checkpoint.
    continued = after.trials[number]
    assert continued.state == TrialState.COMPLETE
    metrics = read_metrics(tmp_path / "multirun" / STUDY / f"trial_{number}")
    assert metrics["resumed_from_step"] > 0 and metrics["steps"] == 300
    assert f"[trial {number}] CONTINUED" in result.stdout
    # Completed trials were kept, not redone.
    assert {
        t.number: t.value
        for t in trials_in(after, TrialState.COMPLETE)
        if t.number in completed_before
    } == completed_before
    assert "resuming: 1 finished" in result.stdout
