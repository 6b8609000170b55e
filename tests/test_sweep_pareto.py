"""Multi-objective sweeps end to end: `sweep=pareto` returns dev loss and size, and keeps its Pareto front."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_clean_failure
from conftest import train_cli
from omegaconf import OmegaConf
from optuna.trial import TrialState
from sweep_helpers import load_study, sweep_args

from makemore_sweep.sweeper.claims import objective_values

STUDY = "dev_vs_size"


def pareto_args(names_path: Path, workdir: Path, *extra: str) -> list[str]:
    return ["sweep=pareto", *sweep_args(names_path, workdir, *extra)[1:]]


@pytest.mark.slow
def test_a_pareto_sweep_prints_saves_exports_and_draws_its_front(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli(
        pareto_args(names_path, tmp_path, "hydra.sweeper.n_trials=6"), cwd=tmp_path, env=run_env
    )
    assert result.returncode == 0, result.stderr[-3000:]

    study = load_study(tmp_path, STUDY)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_loss", "n_params"]
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE
    ] * 6  # nothing pruned, nothing failed
    for trial in study.trials:  # each trial returned its run's own figures
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert trial.values == [metrics["val_loss"], metrics["n_params"]]
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    assert front and len(front) <= 6

    # The console shows the front, best dev loss first.
    assert (
        f"[sweep] Pareto front over val_loss (minimize), n_params (minimize): {len(front)} trials"
        in result.stdout
    )
    shown = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("[sweep]   trial ") and "val_loss" in line
    ]
    assert [int(line.split()[2].rstrip(":")) for line in shown] == [t.number for t in front]

    # optimization_results.yaml holds the front as upstream's `solutions`.
    results = OmegaConf.to_container(
        OmegaConf.load(tmp_path / "multirun" / STUDY / "optimization_results.yaml")
    )
    assert isinstance(results, dict)
    assert results["objectives"] == ["val_loss", "n_params"]
    assert [(s["trial"], s["values"]) for s in results["solutions"]] == [
        (t.number, t.values) for t in front
    ]

    # Every front trial, and no other, is an experiment; one of them reruns to the same figures.
    experiments = tmp_path / "conf" / "experiment"
    assert sorted(p.stem for p in experiments.glob("*.yaml")) == sorted(
        f"{STUDY}_pareto_{t.number}" for t in front
    )
    smallest = front[-1]
    rerun = train_cli(
        [
            f"hydra.searchpath=[file://{experiments.parent}]",
            f"experiment={STUDY}_pareto_{smallest.number}",
            "logger=none",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    [metrics] = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("metrics.json")]
    assert metrics["n_params"] == smallest.values[1]
    assert metrics["val_loss"] == pytest.approx(smallest.values[0], abs=1e-4)

    # makemore-report draws the front from the study the sweep left.
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "makemore_sweep.cli.report",
            f"--storage=sqlite:///{tmp_path}/studies/{STUDY}.db",
        ],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    assert (
        f"Pareto front over val_loss, n_params: trials {', '.join(str(n) for n in sorted(t.number for t in front))}"
        in report.stdout
    )
    assert (tmp_path / "reports" / STUDY / "pareto.png").is_file()


@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (["hydra.sweeper.pruner=median"], "hydra.sweeper.pruner=median cannot prune"),
        (
            ["hydra.sweeper.objectives=[val_loss,n_param]"],
            "n_param, which is not a numeric metrics.json key; did you mean n_params?",
        ),
        (
            ["hydra.sweeper.direction=minimize"],
            "hydra.sweeper.direction gives 1 direction(s) for the 2 objective(s)",
        ),
    ],
)
def test_a_multi_objective_sweep_refuses_what_it_cannot_do_in_one_sentence(
    names_path: Path, tmp_path: Path, run_env: dict[str, str], extra: list[str], culprit: str
) -> None:
    result = train_cli(
        pareto_args(names_path, tmp_path, *extra), cwd=tmp_path, env=run_env, timeout=120
    )
    assert_clean_failure(result, culprit)
    assert not (tmp_path / "multirun").exists()  # refused before any trial ran


def test_a_trial_without_a_value_for_an_objective_fails_with_its_name() -> None:
    assert objective_values([2.05, 12097], ["val_loss", "n_params"]) == ([2.05, 12097.0], None)
    values, reason = objective_values([2.05, None], ["val_loss", "time_to_target_s"])
    assert values is None and reason is not None and "time_to_target_s = None" in reason
    assert (
        objective_values(2.05, ["val_loss", "n_params"])[1]
        == "the job returned 2.05, not values of val_loss, n_params"
    )


def test_a_study_keeps_the_objectives_it_was_created_with(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    import optuna

    (tmp_path / "studies").mkdir()
    study = optuna.create_study(
        study_name=STUDY,
        storage=f"sqlite:///{tmp_path}/studies/{STUDY}.db",
        directions=["minimize", "minimize"],
    )
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["val_loss", "train_time_s"])

    result = train_cli(pareto_args(names_path, tmp_path), cwd=tmp_path, env=run_env, timeout=120)
    line = assert_clean_failure(
        result, "hydra.sweeper.objectives=[val_loss,n_params] does not fit study 'dev_vs_size'"
    )
    assert "[val_loss,train_time_s]" in line
    assert (
        len(
            optuna.load_study(
                study_name=STUDY, storage=f"sqlite:///{tmp_path}/studies/{STUDY}.db"
            ).trials
        )
        == 0
    )
