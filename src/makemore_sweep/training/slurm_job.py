"""Running as a SLURM job: which job this is, its CPUs, and where a requeued job resumes.

hydra-submitit-launcher runs each trial as a SLURM job. When the job nears its time limit or is
preempted, submitit requeues it (the launcher is checkpointable) and SLURM starts the same
trial again in the same output folder, with SLURM_RESTART_COUNT raised by one. The trial then
continues from `checkpoints/last.ckpt` there instead of starting over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class SlurmJob:
    """What SLURM tells a job about itself through its environment (all None outside SLURM)."""

    job_id: str | None = None
    array_job_id: str | None = None
    array_task_id: int | None = None
    restart_count: int = 0
    cpus_per_task: int | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SlurmJob:
        env = os.environ if environ is None else environ
        return cls(
            job_id=env.get("SLURM_JOB_ID") or None,
            array_job_id=env.get("SLURM_ARRAY_JOB_ID") or None,
            array_task_id=_int_or_none(env.get("SLURM_ARRAY_TASK_ID")),
            restart_count=_int_or_none(env.get("SLURM_RESTART_COUNT")) or 0,
            cpus_per_task=_int_or_none(env.get("SLURM_CPUS_PER_TASK")),
        )

    @property
    def requeued(self) -> bool:
        """True when SLURM started this job again after a requeue (time limit, preemption)."""
        return self.job_id is not None and self.restart_count > 0

    def record(self) -> dict[str, Any]:
        """The job's identity as written to metrics.json and the W&B config."""
        return {
            "slurm_job_id": self.job_id,
            "slurm_array_job_id": self.array_job_id,
            "slurm_array_task_id": self.array_task_id,
            "slurm_restart_count": self.restart_count,
        }


def torch_threads(configured: int | None, job: SlurmJob) -> int | None:
    """`threads` when set, else the job's CPUs: trials sharing a node must not oversubscribe it."""
    return configured or job.cpus_per_task


def resume_checkpoint(configured: Path | None, run_dir: Path, job: SlurmJob) -> Path | None:
    """The checkpoint `trainer.fit` resumes from.

    `ckpt_path` from the config (already checked by `resume.checkpoint_to_resume`) wins;
    otherwise a requeued SLURM job continues from the last.ckpt it wrote in its own output
    folder before it was stopped (None: start afresh, which is also what a requeued job does
    when it was stopped before its first checkpoint).
    """
    if configured:
        return configured
    last = Path(run_dir) / LAST_CHECKPOINT
    if job.requeued and last.is_file():
        return last
    return None
