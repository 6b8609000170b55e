"""What a trial can end as, besides COMPLETE: PRUNED by the pruner, FAIL with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_cli
from optuna.trial import TrialState
from sweep_helpers import load_study, sweep_args, trials_in

pytestmark = pytest.mark.slow


def test_pruned_trials_stop_early_and_are_recorded_with_their_last_value(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(
        names_path,
        tmp_path,
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_options.median={n_startup_trials: 2, n_warmup_steps: 0}",
        # A range wide enough that some trials learn visibly slower than others.
        "optim.lr=tag(log, interval(0.0001, 0.3))",
        steps=100,
    )
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]

    study = load_study(tmp_path)
    pruned = trials_in(study, TrialState.PRUNED)
    assert pruned, result.stdout[-3000:]
    assert len(trials_in(study, TrialState.COMPLETE)) + len(pruned) == 8
    for trial in pruned:
        last_step = max(trial.intermediate_values)
        assert last_step < 100  # stopped before its budget
        assert trial.value == trial.intermediate_values[last_step]
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["state"] == "pruned"
        assert metrics["pruned_at_step"] == last_step == metrics["steps"]
        assert f"[trial {trial.number}] PRUNED" in result.stdout
    # Every trial reported its dev loss at each validation.
    for trial in trials_in(study, TrialState.COMPLETE):
        assert sorted(trial.intermediate_values) == [20, 40, 60, 80, 100]


def test_a_failing_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    # The first trial gets an impossible width; the sweep replaces it and finishes its 2 trials.
    args = sweep_args(
        names_path,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0.5",
        "hydra.sweeper.enqueue=[{model.n_hidden: -5}]",
    )
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]

    study = load_study(tmp_path)
    [failed] = trials_in(study, TrialState.FAIL)
    assert failed.number == 0
    assert (
        failed.user_attrs["fail_reason"]
        == "model.n_hidden=-5 is invalid: it must be an integer ≥ 1."
    )
    assert len(trials_in(study, TrialState.COMPLETE)) == 2
    assert "[trial 0] FAIL" in result.stdout and "model.n_hidden=-5 is invalid" in result.stdout


def test_more_failures_than_allowed_stop_the_sweep_with_one_sentence(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(
        names_path,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0",
        "hydra.sweeper.enqueue=[{model.n_hidden: -5}]",
        # One worker: the sweep stops before a second trial starts (two would run one at once).
        "hydra.sweeper.workers=1",
    )
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        "error: Too many failed trials: 1, more than hydra.sweeper.max_failure_rate=0"
    )
    assert "model.n_hidden=-5 is invalid" in last_line
    [failed] = load_study(tmp_path).trials
    assert failed.state == TrialState.FAIL
