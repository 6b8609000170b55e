"""Cluster pieces that need no cluster: the SLURM job's identity, where a requeued job resumes,
the launcher config, and the CSV curve of a resumed run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from submitit.slurm.slurm import SlurmJobEnvironment

from makemore_sweep.compat.submitit import survive_own_requeue
from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.model.checkpoints import LAST_CHECKPOINT
from makemore_sweep.training.slurm_job import SlurmJob, resume_checkpoint, torch_threads

ARRAY_TASK_ENV = {
    "SLURM_JOB_ID": "1042",
    "SLURM_ARRAY_JOB_ID": "1040",
    "SLURM_ARRAY_TASK_ID": "2",
    "SLURM_RESTART_COUNT": "1",
    "SLURM_CPUS_PER_TASK": "4",
}


def test_a_slurm_job_reads_its_identity_from_the_environment() -> None:
    job = SlurmJob.from_environment(ARRAY_TASK_ENV)
    assert job.record() == {
        "slurm_job_id": "1042",
        "slurm_array_job_id": "1040",
        "slurm_array_task_id": 2,
        "slurm_restart_count": 1,
    }
    assert job.requeued
    assert job.cpus_per_task == 4


def test_outside_slurm_the_record_is_empty_and_nothing_was_requeued() -> None:
    job = SlurmJob.from_environment({})
    assert job.record() == {
        "slurm_job_id": None,
        "slurm_array_job_id": None,
        "slurm_array_task_id": None,
        "slurm_restart_count": 0,
    }
    assert not job.requeued


def _write_last_checkpoint(run_dir: Path) -> Path:
    last = run_dir / LAST_CHECKPOINT
    last.parent.mkdir(parents=True)
    last.write_bytes(b"checkpoint")
    return last


def test_a_requeued_job_resumes_from_the_last_checkpoint_in_its_folder(tmp_path: Path) -> None:
    last = _write_last_checkpoint(tmp_path)
    assert resume_checkpoint(None, tmp_path, SlurmJob.from_environment(ARRAY_TASK_ENV)) == last


def test_a_first_attempt_starts_afresh_even_beside_an_old_checkpoint(tmp_path: Path) -> None:
    _write_last_checkpoint(tmp_path)
    first_attempt = SlurmJob.from_environment({**ARRAY_TASK_ENV, "SLURM_RESTART_COUNT": "0"})
    assert resume_checkpoint(None, tmp_path, first_attempt) is None
    assert resume_checkpoint(None, tmp_path, SlurmJob()) is None


def test_a_job_requeued_before_its_first_checkpoint_starts_afresh(tmp_path: Path) -> None:
    assert resume_checkpoint(None, tmp_path, SlurmJob.from_environment(ARRAY_TASK_ENV)) is None


def test_a_configured_ckpt_path_wins(tmp_path: Path) -> None:
    _write_last_checkpoint(tmp_path)
    requeued = SlurmJob.from_environment(ARRAY_TASK_ENV)
    assert resume_checkpoint(Path("/elsewhere/epoch.ckpt"), tmp_path, requeued) == Path(
        "/elsewhere/epoch.ckpt"
    )


def test_torch_uses_the_cpus_slurm_gave_unless_threads_is_set() -> None:
    job = SlurmJob.from_environment(ARRAY_TASK_ENV)
    assert torch_threads(None, job) == 4
    assert torch_threads(2, job) == 2
    assert torch_threads(None, SlurmJob()) is None


def _launcher_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        cfg = compose(
            "train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True
        )
    return cfg.hydra.launcher


def test_the_slurm_launcher_asks_for_one_gpu_and_requeues_on_time_limit() -> None:
    launcher = _launcher_config()
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1
    assert launcher.max_num_timeout > 0  # 0 would make submitit give up instead of requeueing
    assert launcher.additional_parameters.requeue is True
    assert "export WANDB_MODE=offline" in launcher.setup


def test_every_slurm_launcher_setting_can_be_overridden() -> None:
    launcher = _launcher_config(
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=2",
        "hydra.launcher.mem_gb=8",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.array_parallelism=4",
        "+hydra.launcher.additional_parameters.mail-type=END",
        "hydra.launcher.setup=[module load cuda]",
    )
    assert (launcher.partition, launcher.gpus_per_node, launcher.cpus_per_task) == ("gpu", 0, 2)
    assert (launcher.mem_gb, launcher.timeout_min, launcher.array_parallelism) == (8, 30, 4)
    assert launcher.additional_parameters["mail-type"] == "END"
    assert list(launcher.setup) == ["module load cuda"]


def test_the_launches_of_a_sweep_share_one_squeue_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker's launch waits in a thread of its own; one squeue listing answers them all."""
    import pickle
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from makemore_sweep.cluster import slurm_launcher

    calls: list[list[str]] = []

    def listing(job_ids: list[str]) -> dict[str, tuple[str, str]]:
        calls.append(job_ids)
        return {"11_0": ("RUNNING", "None"), "12_0": ("PENDING", "Priority")}

    clock = [1000.0]
    monkeypatch.setattr(slurm_launcher, "queue", listing)
    monkeypatch.setattr(slurm_launcher.time, "monotonic", lambda: clock[0])
    launcher = instantiate(_launcher_config("hydra.launcher.gpus_per_node=0"))
    first, second = SimpleNamespace(job_id="11_0"), SimpleNamespace(job_id="12_0")
    launcher.check_jobs([first])
    clock[0] += 1.0
    launcher.check_jobs([second])  # within CHECK_EVERY_S: answered from the same listing
    launcher.check_jobs([first])
    assert calls == [["11"]]
    clock[0] += slurm_launcher.CHECK_EVERY_S
    launcher.check_jobs([first])
    assert calls == [["11"], ["11", "12"]]  # both launches asked recently: one call lists both
    clock[0] += 3 * slurm_launcher.CHECK_EVERY_S  # the second launch ended: no longer listed
    launcher.check_jobs([first])
    assert calls[-1] == ["11"]
    # A replacement job submitted after that call is not in its listing: too new, not dead.
    clock[0] += 1.0
    newcomer = SimpleNamespace(job_id="13_0")
    launcher.check_jobs([newcomer])
    assert "13_0" not in launcher._missing_since
    clock[0] += slurm_launcher.CHECK_EVERY_S  # asked about before this call, and still absent
    launcher.check_jobs([newcomer])
    assert "13_0" in launcher._missing_since and calls[-1] == ["11", "13"]
    assert launcher._last_state == {"11_0": "RUNNING", "12_0": "PENDING"}
    # Pickled into each job without the waiting state (the lock would not pickle).
    copy = pickle.loads(pickle.dumps(launcher))
    assert copy._last_state == {} and copy._listing is None


@pytest.mark.parametrize(
    ("scontrol_ends_by", "requeued"), [("kill -TERM $$", True), ("exit 1", False)]
)
def test_a_requeue_stopped_by_its_own_sigterm_counts_as_done(
    scontrol_ends_by: str, requeued: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SLURM stops a requeued job at once, `scontrol requeue` (a child of the job) included; the
    # stand-in `scontrol` ends the way the real one does then, or fails for another reason.
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f"#!/bin/sh\n{scontrol_ends_by}\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "1042")
    survive_own_requeue()
    survive_own_requeue()  # idempotent: wraps submitit once
    environment = SlurmJobEnvironment()
    if requeued:
        environment._requeue(countdown=2)
    else:
        with pytest.raises(subprocess.CalledProcessError):
            environment._requeue(countdown=2)
