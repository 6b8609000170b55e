"""`hydra/launcher=slurm` on a real single-node SLURM cluster (scripts/slurm-local.sh).

Trials become SLURM jobs that record their job ids; a trial stopped by its time limit, or
preempted, is requeued and resumes from its checkpoint; a sweep runs its trials on the
cluster, one job per trial or in two long-lived worker jobs, with a journal study; jobs that
can never start end the sweep with one sentence. Without SLURM (or root) these tests
skip on a laptop and fail under CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import REPO_ROOT, local_service, skip_or_fail, train_cli, train_cli_running
from user_nets import users_network, write_user_folder
from wandb_offline import run_config

from makemore_sweep.model.checkpoints import LAST_CHECKPOINT
from makemore_sweep.sweeper.storage import open_storage
from makemore_sweep.training.metrics_file import read_metrics

# `make test` runs them after the others, alone (the `exclusive` marker): their jobs' time
# limits and requeues are timed on the cluster's cores, which tests beside them would share.
pytestmark = [pytest.mark.service, pytest.mark.timeout(900), pytest.mark.exclusive]

SCRIPT = REPO_ROOT / "scripts" / "slurm-local.sh"
SWEEP = "beat_2p2"
# The local cluster has one CPU-only node with 2 cores: one core and no GPU per trial.
ON_LOCAL_CLUSTER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """Client environment of the local cluster; started (and stopped) here if it was not running."""
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        skip_or_fail("SLURM is not installed (sudo scripts/install-services.sh slurm)")
    if os.geteuid() != 0:
        skip_or_fail("the local SLURM cluster runs its daemons as root (run the tests as root)")
    with local_service(SCRIPT) as last_line:
        # Its last line, "export SLURM_CONF=...", serves where /etc/slurm/slurm.conf is not ours.
        yield {"SLURM_CONF": last_line.removeprefix("export SLURM_CONF=")}


@pytest.fixture
def slurm_env(run_env: dict[str, str], slurm_cluster: dict[str, str]) -> dict[str, str]:
    return {**run_env, **slurm_cluster}


def _job_logs(sweep_dir: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(sweep_dir.glob(".submitit/*/*_log.*"))
    )


def _failure(result: subprocess.CompletedProcess[str], sweep_dir: Path) -> str:
    return f"{result.stderr[-3000:]}\n--- job logs ---\n{_job_logs(sweep_dir)[-5000:]}"


def test_a_grid_multirun_runs_each_trial_as_a_slurm_job(
    slurm_env: dict[str, str], names_path: Path, tmp_path: Path
) -> None:
    """The grid's second point is a user's own network (issue 26): the job, started by sbatch in
    the folder the sweep ran in, finds ./my_nets.py and ./configs/model/resnet.yaml."""
    write_user_folder(tmp_path)
    sweep_dir = tmp_path / "multirun"
    result = train_cli(
        [
            "-m",
            *ON_LOCAL_CLUSTER,
            "model=mlp_bn,resnet",
            f"data.path={names_path}",
            "trainer.max_steps=200",
            "trainer.val_every_n_steps=100",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        env=slurm_env,
    )
    assert result.returncode == 0, _failure(result, sweep_dir)

    trials = [read_metrics(sweep_dir / str(n)) for n in (0, 1)]
    assert [m["state"] for m in trials] == ["completed", "completed"]
    job_ids = [m["slurm_job_id"] for m in trials]
    assert None not in job_ids and len(set(job_ids)) == 2
    assert sorted(m["slurm_array_task_id"] for m in trials) == [0, 1]  # one job array per batch
    assert len({m["slurm_array_job_id"] for m in trials}) == 1
    assert [m["torch_threads"] for m in trials] == [1, 1]  # the one CPU each job was given
    resnet = users_network(tmp_path, width=24)
    assert trials[1]["n_params"] == sum(p.numel() for p in resnet.parameters())

    # Each trial's W&B run (offline, in the trial's folder) carries the same job identity.
    for n, metrics in enumerate(trials):
        (run_file,) = (sweep_dir / str(n) / "wandb").glob("offline-run-*/run-*.wandb")
        config = run_config(run_file)
        assert config["slurm_job_id"] == metrics["slurm_job_id"]
        assert config["slurm_array_task_id"] == metrics["slurm_array_task_id"]

    # The jobs went through sbatch with the launcher's settings.
    (job_script,) = sweep_dir.glob(".submitit/*/*_submission.sh")
    script = job_script.read_text()
    for line in (
        "#SBATCH --requeue",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --array=0-1%",
        "export WANDB_MODE=offline",
    ):
        assert line in script


def test_trials_stopped_by_their_time_limit_or_preempted_are_requeued_and_resume(
    slurm_env: dict[str, str], names_path: Path, tmp_path: Path
) -> None:
    """A grid of two jobs at once on the cluster's two cores: job 0 trains longer than its time
    limit lets it, job 1 is preempted (requeued by the test) once it has a checkpoint."""
    sweep_dir, log = tmp_path / "multirun", tmp_path / "sweep.log"
    with log.open("w") as output:
        sweep = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "makemore_sweep.cli.train",
                "-m",
                *ON_LOCAL_CLUSTER,
                "hydra.launcher.timeout_min=1",  # SLURM's smallest time limit
                # Warn 5 s before the limit; slurmctld checks every 30 s, so the warning (and the
                # requeue) comes 25 to 55 s into each job.
                "hydra.launcher.signal_delay_s=5",
                "hydra.launcher.max_num_timeout=8",
                # Job 0: a minute of training whatever the machine's speed, more than one job
                # gets, so its first job is always stopped (Lightning's timer is in the
                # checkpoint and carries on). Job 1: 20 s, so only its preemption stops it.
                "+trainer.max_time=00:00:01:00,00:00:00:20",
                "trainer.max_steps=100000000",
                "optim.schedule=constant",
                "trainer.val_every_n_steps=100",  # a checkpoint every few seconds
                "logger=csv",
                f"data.path={names_path}",
                f"hydra.sweep.dir={sweep_dir}",
            ],
            cwd=tmp_path,
            env=slurm_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        last = sweep_dir / "1" / LAST_CHECKPOINT
        deadline = time.monotonic() + 300
        while not last.is_file() and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert last.is_file(), f"no checkpoint before preemption:\n{log.read_text()[-3000:]}"
        (job_id,) = [d.name for d in (sweep_dir / ".submitit").iterdir() if d.name.endswith("_1")]
        # What SLURM does to a running job preempted with PreemptMode=REQUEUE.
        subprocess.run(["scontrol", "requeue", job_id], env=slurm_env, check=True, timeout=60)
        assert sweep.wait(timeout=800) == 0, (
            f"{log.read_text()[-3000:]}\n{_job_logs(sweep_dir)[-5000:]}"
        )
    finally:
        if sweep.poll() is None:
            sweep.kill()

    for number in (0, 1):
        metrics = read_metrics(sweep_dir / str(number))
        assert metrics["state"] == "completed"
        assert metrics["slurm_restart_count"] >= 1, f"job {number} was never requeued"
        assert metrics["resumed_from_step"] is not None, f"job {number} did not resume"
        assert metrics["steps"] > metrics["resumed_from_step"] > 0
        # One unbroken dev-loss history: resumed, not started over.
        steps = [step for step, _ in metrics["val_history"]]
        assert steps[0] == 100 and steps == sorted(set(steps))
        assert steps[-1] >= metrics["resumed_from_step"]
    # The curve written before each requeue is kept beside the new one.
    assert list((sweep_dir / "0" / "csv").glob("metrics.part*.csv"))
    # submitit's own account of the time limit's requeue, in job 0's log.
    (timed_out,) = [d for d in (sweep_dir / ".submitit").iterdir() if d.name.endswith("_0")]
    assert "Requeued job" in "".join(
        p.read_text(errors="replace") for p in timed_out.glob("*_log.*")
    )


def test_a_two_trial_sweep_runs_its_trials_as_slurm_jobs(
    slurm_env: dict[str, str], names_path: Path, tmp_path: Path
) -> None:
    if not (REPO_ROOT / "sweeps" / f"{SWEEP}.yaml").is_file():
        skip_or_fail(
            f"sweeps/{SWEEP}.yaml is missing: the Optuna sweeper (issue 3) is needed for this test"
        )
    # One job per trial (workers=0); the study is shared through a journal file, never SQLite.
    sweep_dir, storage = tmp_path / "multirun", f"journal:{tmp_path}/study.journal"
    result = train_cli(
        [
            "-m",
            f"sweep={SWEEP}",
            *ON_LOCAL_CLUSTER,
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.workers=0",
            "hydra.sweeper.pruner=none",  # both trials train to the end (Hyperband may stop one)
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=on-slurm",
            f"hydra.sweeper.export_dir={tmp_path / 'experiments'}",  # not the checkout's conf/
            f"data.path={names_path}",
            "trainer.max_steps=200",
            "trainer.val_every_n_steps=100",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        env=slurm_env,
    )
    assert result.returncode == 0, _failure(result, sweep_dir)

    job_ids = [read_metrics(sweep_dir / f"trial_{n}")["slurm_job_id"] for n in (0, 1)]
    assert None not in job_ids and len(set(job_ids)) == 2
    study = optuna.load_study(study_name="on-slurm", storage=open_storage(storage))
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2


def test_a_sweep_with_two_workers_runs_all_its_trials_in_two_slurm_jobs(
    slurm_env: dict[str, str], names_path: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "multirun"
    result = train_cli(
        [
            f"sweep={SWEEP}",
            *ON_LOCAL_CLUSTER,
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.workers=2",
            "hydra.sweeper.study_name=workers-on-slurm",
            f"hydra.sweeper.export_dir={tmp_path / 'experiments'}",
            f"data.path={names_path}",
            "trainer.max_steps=100",
            "trainer.val_every_n_steps=50",
            "logger=csv",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        env=slurm_env,
    )
    assert result.returncode == 0, _failure(result, sweep_dir)
    assert "[sweep] 2 workers as SLURM jobs" in result.stdout

    # No storage given: a journal file in the sweep folder, which the nodes share.
    journal = sweep_dir / "optuna-study.journal"
    assert f"journal:{journal}" in result.stdout
    study = optuna.load_study(
        study_name="workers-on-slurm", storage=open_storage(f"journal:{journal}")
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert [t.state in finished for t in study.trials] == [True] * 3
    # Two jobs were submitted (each worker alone, so that a dead one can be replaced by a job
    # of its own), and every trial ran inside one of them.
    submitted = {
        d.name for d in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+(_\d+)?", d.name)
    }
    assert len(submitted) == 2
    trials = [read_metrics(sweep_dir / f"trial_{t.number}") for t in study.trials]
    ran_in = {
        f"{m['slurm_array_job_id']}_{m['slurm_array_task_id']}"
        if m["slurm_array_job_id"]
        else str(m["slurm_job_id"])
        for m in trials
    }
    assert ran_in <= submitted
    assert [m["torch_threads"] for m in trials] == [1, 1, 1]  # cpus_per_task of the worker's job


def test_jobs_that_cannot_start_end_the_sweep_with_one_sentence(
    slurm_env: dict[str, str], names_path: Path, tmp_path: Path
) -> None:
    # The default gpus_per_node=1 on a cluster whose only node has no GPU.
    started = time.monotonic()
    result = train_cli(
        [
            f"sweep={SWEEP}",
            "hydra/launcher=slurm",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "hydra.sweeper.workers=2",
            f"hydra.sweeper.export_dir={tmp_path / 'experiments'}",
            f"data.path={names_path}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        cwd=tmp_path,
        env=slurm_env,
        timeout=180,
    )
    assert time.monotonic() - started < 120
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: SLURM cannot start the sweep's jobs"), result.stderr[-2000:]
    assert "hydra.launcher.gpus_per_node" in last_line and "has no GPUs" in last_line
    assert (
        subprocess.run(
            ["squeue", "-h"], check=False, env=slurm_env, capture_output=True, text=True
        ).stdout.strip()
        == ""
    )

    # More CPUs than any node has: accepted by sbatch, then pending for good (PartitionConfig).
    started = time.monotonic()
    pending = train_cli(
        [
            f"sweep={SWEEP}",
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=512",
            "hydra.launcher.mem_gb=1",
            f"hydra.sweeper.export_dir={tmp_path / 'experiments'}",
            f"data.path={names_path}",
            f"hydra.sweep.dir={tmp_path / 'pending'}",
        ],
        cwd=tmp_path,
        env=slurm_env,
        timeout=180,
    )
    assert time.monotonic() - started < 120
    assert pending.returncode != 0 and "Traceback" not in pending.stderr
    last_line = pending.stderr.strip().splitlines()[-1]
    assert "pends with reason" in last_line and "hydra.launcher.cpus_per_task" in last_line, (
        pending.stderr[-2000:]
    )
    assert pending.stderr.count("sacct error") <= 1  # submitit's warning, once at most
    assert (
        subprocess.run(
            ["squeue", "-h"], check=False, env=slurm_env, capture_output=True, text=True
        ).stdout.strip()
        == ""
    )

    # An SQLite study would be shared by the nodes: refused before any job is submitted.
    refused = train_cli(
        [
            f"sweep={SWEEP}",
            *ON_LOCAL_CLUSTER,
            f"hydra.sweeper.storage=sqlite:///{tmp_path}/x.db",
            f"data.path={names_path}",
        ],
        cwd=tmp_path,
        env=slurm_env,
        timeout=180,
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "is an SQLite file" in refused.stderr.strip().splitlines()[-1]


def test_a_cancelled_worker_job_is_replaced_by_a_new_job_and_the_sweep_ends_well(
    slurm_env: dict[str, str], names_path: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "multirun"
    args = [
        f"sweep={SWEEP}",
        *ON_LOCAL_CLUSTER,
        "hydra.sweeper.n_trials=10",  # trials left when the death is seen (~35 s: squeue)
        "hydra.sweeper.workers=2",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.study_name=heal-on-slurm",
        f"hydra.sweeper.export_dir={tmp_path / 'experiments'}",
        f"data.path={names_path}",
        "trainer.max_steps=800",
        "trainer.val_every_n_steps=50",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    with train_cli_running(args, tmp_path, slurm_env) as sweep:
        # Once a trial has a checkpoint, one worker job is cancelled, as an admin or a lost node would.
        deadline = time.monotonic() + 300
        while not list(sweep_dir.glob(f"trial_*/{LAST_CHECKPOINT}")):
            assert time.monotonic() < deadline and sweep.poll() is None, "no trial checkpointed"
            time.sleep(0.2)
        queued = subprocess.run(
            ["squeue", "-h", "-o", "%i"], env=slurm_env, capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(queued) == 2, queued
        subprocess.run(["scancel", queued[0]], env=slurm_env, check=True)
        stdout, stderr = sweep.communicate(timeout=600)
    result = subprocess.CompletedProcess(sweep.args, sweep.returncode, stdout, stderr)
    assert sweep.returncode == 0, _failure(result, sweep_dir)

    study = optuna.load_study(
        study_name="heal-on-slurm",
        storage=open_storage(f"journal:{sweep_dir / 'optuna-study.journal'}"),
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert [t.state in finished for t in study.trials] == [True] * 10  # no FAIL
    # The cancelled job's worker was replaced by a third job, in one line.
    assert re.search(
        r"\[sweep\] worker [01] died \(its job \S+ ended without a result, .*\); worker 2 started",
        stdout,
    ), stdout
    for noise in ("Traceback", "Error executing job", ".pkl", "error:"):
        assert noise not in stdout + stderr, (stdout + stderr)[-3000:]
