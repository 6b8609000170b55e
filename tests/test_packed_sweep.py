"""Packed sweeps (`hydra.sweeper.pack=G`, issue 20), run as a user runs them.

- A packed sweep equals the same sweep run one trial at a time, trial by trial (same
  parameters, dev loss within 1e-4), while its trials of two shapes train in two cohorts;
  every trial keeps its records (folder, .hydra files, metrics.json + packed_with, CSV curve,
  W&B run, checkpoints that load as single networks) and the report shows them.
- In one pack, a diverging trial fails alone, and the slot it frees takes the next trial; the
  pruner stops trials at their own steps.
- A packed worker killed with SIGKILL: its trials go on from their checkpoints, with no FAIL
  (tests/test_user_network.py, with a user's network in the generic stack; this file's Ctrl-C
  test continues the MLP's fused form from its checkpoints).
- Ctrl-C: every member is recorded interrupted and handed back; the same command continues them.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from conftest import train_cli, train_cli_running
from optuna.trial import TrialState
from sweep_helpers import STUDY, load_study, trials_in, wandb_runs
from sweep_watch import wait_for_running_trial_with_checkpoint

from makemore_sweep.cli import report
from makemore_sweep.model.checkpoint_paths import BEST_CHECKPOINT, LAST_CHECKPOINT
from makemore_sweep.model.checkpoints import network_from_checkpoint
from makemore_sweep.training.metrics_file import read_metrics

pytestmark = pytest.mark.slow


def packed_args(names_path: Path, workdir: Path, *extra: str, steps: int = 300) -> list[str]:
    """sweep=lecture_tune, small: its study is named like the helpers' (beat_2p2)."""
    return [
        "sweep=lecture_tune",
        f"hydra.sweeper.study_name={STUDY}",
        f"data.path={names_path}",
        f"trainer.max_steps={steps}",
        "trainer.val_every_n_steps=100",
        f"hydra.sweeper.export_dir={workdir / 'conf' / 'experiment'}",
        *extra,
    ]


def trial_dirs(workdir: Path) -> dict[int, Path]:
    return {
        int(path.name.removeprefix("trial_")): path
        for path in (workdir / "multirun" / STUDY).glob("trial_*")
    }


def test_a_packed_sweep_equals_the_sweep_one_trial_at_a_time_and_keeps_every_record(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    # Two shapes (two cohorts), and rates, decay, momentum and weight decay that differ per trial.
    space = [  # sweep overrides: they add to, or replace, the sweep file's params
        "optim.lr=tag(log, interval(0.02, 0.4))",
        "optim.weight_decay=tag(log, interval(0.000001, 0.001))",
        "model.bn_momentum=tag(log, interval(0.001, 0.1))",
        "model.n_hidden=choice(48, 64)",
    ]
    common = ["hydra.sweeper.n_trials=6", "hydra.sweeper.workers=1", "hydra.sweeper.pruner=none"]
    common += ["hydra.sweeper.enqueue=[]", *space]
    alone, packed = tmp_path / "alone", tmp_path / "packed"
    for workdir, pack in ((alone, 1), (packed, 3)):
        workdir.mkdir()
        args = packed_args(names_path, workdir, *common, f"hydra.sweeper.pack={pack}")
        result = train_cli(args, cwd=workdir, env=run_env)
        assert result.returncode == 0, result.stderr[-3000:]

    one_by_one, together = load_study(alone), load_study(packed)
    assert len(trials_in(together, TrialState.COMPLETE)) == len(together.trials) == 6
    by_shape: dict[int, set[int]] = {}
    for trial in together.trials:
        twin = one_by_one.trials[trial.number]
        assert twin.params == trial.params  # the same sampler, the same asks
        assert trial.value == pytest.approx(twin.value, abs=1e-4)  # exactness, trial by trial
        by_shape.setdefault(trial.params["model.n_hidden"], set()).add(trial.number)

    dirs = trial_dirs(packed)
    solo_keys = set(read_metrics(trial_dirs(alone)[0]))
    for number, run_dir in dirs.items():
        metrics = read_metrics(run_dir)
        assert set(metrics) == solo_keys | {"packed_with"}
        assert metrics["state"] == "completed" and metrics["steps"] == 300
        assert [step for step, _ in metrics["val_history"]] == [100, 200, 300]
        # Trials of one shape only share a network.
        shape = together.trials[number].params["model.n_hidden"]
        assert set(metrics["packed_with"]) <= by_shape[shape] - {number}
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            assert (run_dir / ".hydra" / name).is_file()
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        assert f"+optuna_trial.number={number}" in overrides
        curve = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
        assert curve[0].split(",") == ["lr", "step", "test_loss", "train_loss", "val_loss"]
        assert (
            sum(1 for row in curve[1:] if not row.endswith(",")) == 3
        )  # a dev loss per validation
        # Its own W&B run, in the study's group, holding its own parameters.
        [(group, config)] = list(wandb_runs(run_dir))
        assert group == STUDY and float(config["optim.lr"]) == pytest.approx(
            together.trials[number].params["optim.lr"]
        )
        # Checkpoints that load as an ordinary network, which gives the trial's dev loss.
        for checkpoint in (BEST_CHECKPOINT, LAST_CHECKPOINT):
            model = network_from_checkpoint(run_dir / checkpoint)
            assert model.spec.keys["n_hidden"] == shape
    assert any(read_metrics(run_dir)["packed_with"] for run_dir in dirs.values())
    assert (packed / "conf" / "experiment" / f"{STUDY}_best.yaml").is_file()

    out = tmp_path / "report"
    report.main(["--storage", f"sqlite:///{packed}/studies/{STUDY}.db", "--out", str(out)])
    page = (out / "report.html").read_text()
    assert "6 trials" in page and f"{together.best_value:.4f}" in page


def test_in_a_pack_a_diverging_trial_fails_alone_and_the_pruner_stops_trials_at_their_own_steps(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    # Trial 0 learns and trial 1 diverges at once; trial 2, learning slowly, takes its slot and
    # ends a step after trial 0. Trial 3 (trial 2's twin) takes trial 0's slot and is compared
    # with both at its own steps, from its own step 0. Trial 4 replaces the failed one.
    enqueue = "hydra.sweeper.enqueue=[{optim.lr: 0.2}, {optim.lr: 500.0}, {optim.lr: 0.001}, {optim.lr: 0.001}, {optim.lr: 0.2}]"
    args = packed_args(
        names_path,
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.workers=1",
        "hydra.sweeper.pack=2",
        "hydra.sweeper.max_failure_rate=0.5",
        "hydra.sweeper.params={optim.lr: 'tag(log, interval(0.0001, 1000))'}",
        enqueue,
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_options.median={n_startup_trials: 1, n_warmup_steps: 0}",
        "logger=csv",
        steps=400,
    )
    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path)
    states = [trial.state for trial in study.trials]
    complete, failed, pruned = TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED
    assert states == [complete, failed, complete, pruned, complete]
    assert "diverged" in study.trials[1].user_attrs["fail_reason"]
    dirs = trial_dirs(tmp_path)
    assert read_metrics(dirs[1])["state"] == "failed"
    assert read_metrics(dirs[0])["packed_with"] == [1, 2]  # the slot trial 1 left took trial 2
    assert read_metrics(dirs[2])["packed_with"] == [0, 3]
    assert sorted(study.trials[2].intermediate_values) == [100, 200, 300, 400]
    # Trial 3 joined when trial 0 ended, yet reported at its own step 100, and stopped there.
    metrics = read_metrics(dirs[3])
    assert metrics["state"] == "pruned" and metrics["pruned_at_step"] == metrics["steps"] == 100
    assert sorted(study.trials[3].intermediate_values) == [100]


def test_ctrl_c_stops_a_pack_in_good_order_and_the_same_command_continues_its_trials(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = packed_args(
        names_path,
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.workers=1",
        "hydra.sweeper.pack=3",
        "hydra.sweeper.pruner=none",
        "logger=csv",
        steps=4000,
    )
    with train_cli_running(args, tmp_path, run_env) as sweep:
        number, _ = wait_for_running_trial_with_checkpoint(tmp_path, sweep, timeout=300)
        os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    # Every member wrote its metrics.json as interrupted, and was handed back to the study.
    study = load_study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 3
    stopped = {n: read_metrics(d) for n, d in trial_dirs(tmp_path).items()}
    assert {m["state"] for m in stopped.values()} == {"interrupted"}
    assert "the sweep continues it when its command is run again" in stopped[number]["error"]

    result = train_cli(args, cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3  # the same 3, no FAIL
    for trial_number, run_dir in trial_dirs(tmp_path).items():
        metrics = read_metrics(run_dir)
        assert metrics["state"] == "completed" and metrics["steps"] == 4000
        assert [step for step, _ in metrics["val_history"]] == list(range(100, 4001, 100))
        if trial_number == number:  # it had a checkpoint: it went on from there
            resumed = metrics["resumed_from_step"]
            assert 0 < resumed <= stopped[number]["steps"] and resumed % 50 == 0


def test_an_error_in_one_members_run_fails_that_trial_alone(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    def sweep(n_trials: int) -> None:
        args = packed_args(
            names_path,
            tmp_path,
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.workers=1",
            "hydra.sweeper.pack=3",
            "hydra.sweeper.pruner=none",
            "hydra.sweeper.max_failure_rate=0.5",
            "logger=csv",
        )
        result = train_cli(args, cwd=tmp_path, env=run_env)
        assert result.returncode == 0, result.stderr[-3000:]

    sweep(1)  # the study and its folder, with trial 0
    # Trial 2 cannot write its checkpoints (a file stands where its folder would be): its first
    # validation raises inside the pack, while trials 1 and 3 share the network.
    blocked = tmp_path / "multirun" / STUDY / "trial_2" / "checkpoints"
    blocked.parent.mkdir()
    blocked.write_text("not a folder")
    sweep(4)
    study = load_study(tmp_path)
    complete, failed = TrialState.COMPLETE, TrialState.FAIL
    assert [t.state for t in study.trials] == [complete, complete, failed, complete, complete]
    assert "checkpoints" in study.trials[2].user_attrs["fail_reason"]
    metrics = read_metrics(trial_dirs(tmp_path)[2])
    assert metrics["state"] == "failed" and "checkpoints" in metrics["error"]
    # Its pack-mates trained on to the end, and trial 4 took its slot.
    assert read_metrics(trial_dirs(tmp_path)[1])["packed_with"] == [2, 3, 4]
