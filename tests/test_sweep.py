"""Sweeps end to end through the real CLI: Optuna study in SQLite, Hydra multirun, W&B offline files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_cli
from sweep_helpers import FINISHED, SEARCHED, STUDY, load_study, sweep_args, trials_in, wandb_runs

pytestmark = pytest.mark.slow


def test_a_four_trial_sweep_fills_the_study_and_exports_its_best_trial(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(names_path, tmp_path, "hydra.sweeper.n_trials=4", "logger=wandb", steps=100)
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]

    study = load_study(tmp_path)
    assert len(study.trials) == 4
    assert all(t.state in FINISHED for t in study.trials)
    assert all(set(t.params) == SEARCHED for t in study.trials)
    assert study.trials[0].params["model.n_hidden"] == 200  # the lecture configuration goes first
    assert 1.5 < study.best_value < 2.8  # learned something in 100 steps (init loss is ≈ 3.3)

    # One line per finished trial, then the best trial with its test loss.
    for trial in study.trials:
        assert f"[trial {trial.number}] {trial.state.name}" in result.stdout
    best = study.best_trial
    assert (
        f"[sweep] best trial {best.number}: dev {best.value:.4f}, test {best.user_attrs['test_loss']:.4f}"
        in result.stdout
    )

    # Each trial's run: metrics.json names its trial; its W&B run is in the study's group.
    for trial in study.trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir == tmp_path / "multirun" / STUDY / f"trial_{trial.number}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert (metrics["optuna_study"], metrics["optuna_trial"]) == (STUDY, trial.number)
        [(group, config)] = list(wandb_runs(run_dir))
        assert group == STUDY
        assert config["optuna_trial.number"] == str(trial.number)
        assert json.loads(config["model.n_hidden"]) == trial.params["model.n_hidden"]

    # The embedding figure is drawn by the trials that improved on the study's best when they
    # ended: the first to complete and the best one always; never one beaten before it started.
    complete = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete
    )
    drew = {
        t.number for t in complete if (Path(t.user_attrs["run_dir"]) / "embeddings.png").is_file()
    }
    assert {complete[0].number, best.number} <= drew
    for trial in complete:
        beaten_before = [
            t
            for t in complete
            if t.datetime_complete < trial.datetime_start and t.value < trial.value
        ]
        if beaten_before:
            assert trial.number not in drew, (trial.number, beaten_before[0].number)

    # The exported experiment reruns the best trial as a single run, with the same dev loss.
    experiment = tmp_path / "conf" / "experiment" / f"{STUDY}_best.yaml"
    assert f"makemore-train experiment={STUDY}_best" in result.stdout
    rerun = train_cli(
        [
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            f"experiment={STUDY}_best",
            "logger=none",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    [rerun_metrics] = [
        json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("metrics.json")
    ]
    assert rerun_metrics["val_loss"] == pytest.approx(best.value, abs=1e-4), experiment.read_text()


def test_parallel_trials_run_as_separate_processes_sharing_the_cores(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(
        names_path,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=local",
    )
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]

    study = load_study(tmp_path)
    assert len(trials_in(study, *FINISHED)) == 2
    from makemore_sweep.cluster.local_launcher import available_cores

    for trial in study.trials:
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["torch_threads"] == max(1, available_cores() // 2)
    # submitit ran each job in a process of its own.
    assert len(list((tmp_path / "multirun" / STUDY / ".submitit").glob("*/*_result.pkl"))) == 2


def test_a_plain_grid_multirun_still_works(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = [
        "-m",
        "model.n_hidden=16,32",
        f"data.path={names_path}",
        "trainer.max_steps=40",
        "trainer.val_every_n_steps=20",
        "logger=none",
    ]
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "multirun").rglob("metrics.json"))
    assert len(runs) == 2
    n_params = sorted(json.loads(p.read_text())["n_params"] for p in runs)
    assert n_params[0] < n_params[1]  # 16 hidden units, then 32
    assert not (tmp_path / "studies").exists()  # no Optuna involved
