"""Long-lived sweep workers (`hydra.sweeper.workers`): trials pulled one after another, in-process.

One of two workers is killed with SIGKILL mid-trial: the other continues that very trial from
its checkpoint, and the study still ends with exactly n_trials finished trials and no FAIL.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import train_cli_running
from optuna.trial import TrialState
from sweep_helpers import FINISHED, STUDY, load_study, sweep_args, trials_in
from sweep_watch import wait_for_running_trial_with_checkpoint

from makemore_sweep.cluster.local_launcher import available_cores
from makemore_sweep.sweeper.claims import OWNER_ATTR
from makemore_sweep.training.metrics_file import read_metrics

pytestmark = pytest.mark.slow
N_TRIALS = 3


def test_a_worker_killed_mid_trial_leaves_its_trial_to_the_other_worker(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(
        names_path,
        tmp_path,
        f"hydra.sweeper.n_trials={N_TRIALS}",
        "hydra.sweeper.workers=2",
        "hydra.sweeper.pruner=none",
        steps=300,
    )
    # -X importtime lists what the sweep process itself imports (workers log to their own files);
    # that is more than a pipe holds while nobody reads it, so stderr goes to a file.
    errors = tmp_path / "sweep.stderr"
    with (
        open(errors, "w") as stderr_file,
        train_cli_running(
            args, tmp_path, run_env, stderr=stderr_file, python_flags=("-X", "importtime")
        ) as sweep,
    ):
        number, owner = wait_for_running_trial_with_checkpoint(tmp_path, sweep, timeout=300)
        assert owner["pid"] != sweep.pid  # a worker process of its own, not the sweep
        os.kill(int(owner["pid"]), signal.SIGKILL)
        stdout, _ = sweep.communicate(timeout=600)
    stderr = errors.read_text()
    assert sweep.returncode == 0, stderr[-3000:]

    study = load_study(tmp_path)
    assert (
        len(trials_in(study, *FINISHED)) == len(study.trials) == N_TRIALS
    )  # no FAIL, none left over
    killed = study.trials[number]
    metrics = read_metrics(tmp_path / "multirun" / STUDY / f"trial_{number}")
    assert killed.state == TrialState.COMPLETE and metrics["state"] == "completed"
    assert metrics["resumed_from_step"] > 0 and metrics["steps"] == 300
    assert (
        killed.user_attrs[OWNER_ATTR]["worker"] != owner["worker"]
    )  # the other worker finished it
    assert f"[trial {number}] CONTINUED" in stdout
    # The dead worker was replaced, in one line (issue 19), and nothing else was said of it.
    assert f"[sweep] worker {owner['worker']} died" in stdout and "worker 2 started" in stdout
    assert "Error executing job" not in stdout + stderr and ".pkl" not in stdout + stderr

    # Every trial printed as it ended, in its own folder, with cores // workers threads.
    for trial in study.trials:
        assert f"[trial {trial.number}] COMPLETE" in stdout
        assert read_metrics(Path(trial.user_attrs["run_dir"]))["torch_threads"] == max(
            1, available_cores() // 2
        )
    # The two workers, and the one that replaced the dead one.
    assert sorted(p.name for p in (tmp_path / "multirun" / STUDY / ".workers").iterdir()) == [
        "worker_0",
        "worker_1",
        "worker_2",
    ]
    assert f"[sweep] best trial {study.best_trial.number}" in stdout
    assert (tmp_path / "conf" / "experiment" / f"{STUDY}_best.yaml").is_file()

    # The sweep process composes, launches and watches: it never loads the training stack,
    # whose import would cost every sweep seconds at its start and at its exit.
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"optuna", "submitit"} <= imported
    assert not {"torch", "lightning", "matplotlib"} & imported


def test_both_workers_killed_one_after_the_other_are_replaced_and_the_sweep_ends_well(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    n_trials = 4
    args = sweep_args(
        names_path,
        tmp_path,
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.workers=2",
        "hydra.sweeper.pruner=none",
        steps=300,
    )
    killed: dict[int, int] = {}  # worker index → the trial it was running
    with train_cli_running(args, tmp_path, run_env) as sweep:
        for _ in range(2):  # worker 0 and worker 1, whichever is caught first, then the other
            number, owner = wait_for_running_trial_with_checkpoint(
                tmp_path,
                sweep,
                timeout=300,
                owned_by=lambda owner: owner.get("worker") in {0, 1} - killed.keys(),
            )
            os.kill(int(owner["pid"]), signal.SIGKILL)
            killed[int(owner["worker"])] = number
        stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr[-3000:]

    study = load_study(tmp_path)
    assert len(trials_in(study, *FINISHED)) == len(study.trials) == n_trials  # no FAIL
    continued = [
        t.number
        for t in study.trials
        if read_metrics(tmp_path / "multirun" / STUDY / f"trial_{t.number}")["resumed_from_step"]
    ]
    assert set(killed.values()) <= set(continued) and len(continued) >= 2
    # One line per replacement, and nothing else about the dead workers.
    for worker, number in killed.items():
        assert f"[sweep] worker {worker} died (" in stdout, stdout
        assert f"started; trial {number} continues" in stdout
    assert "worker 2 started" in stdout and "worker 3 started" in stdout
    for noise in ("Traceback", "Error executing job", ".pkl", "error:"):
        assert noise not in stdout + stderr, (stdout + stderr)[-3000:]
