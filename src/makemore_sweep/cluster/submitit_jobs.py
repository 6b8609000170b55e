"""hydra-submitit-launcher's launch, made patient: it waits for every job, whatever happens to one.

Upstream collects results job after job, so the first job that dies (SIGKILL, a lost node)
ends the launch while the others still run. For long-lived sweep workers that is wrong: the
others continue the dead one's trial. Here every job is waited for, a dead one becomes a
failed JobReturn, and subclasses may look at the jobs while they wait (SLURM: jobs that can
never start) and say why a submission failed. Ctrl-C stops the jobs too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

POLL_S = 1.0
# After Ctrl-C, jobs on this machine got the signal too: give them this long to record their
# trials in good order before they are stopped.
GRACEFUL_STOP_S = 20.0


class PatientSubmititLauncher(BaseSubmititLauncher):
    # submitit's executor name ("local" or "slurm"), kept by us rather than read from upstream.
    cluster = "local"

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit  # lazily, as upstream: plugin discovery must stay fast

        assert self.config is not None and len(job_overrides) > 0
        executor = self._executor(submitit)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        try:
            jobs = self.submit(executor, job_params)
        except Exception as error:  # noqa: BLE001 - sbatch and submitit errors vary; subclasses explain them
            raise self.submission_failed(error) from None
        try:
            while not all(self.job_done(job) for job in jobs):
                self.check_jobs(jobs)
                time.sleep(POLL_S)
        except BaseException:
            self.stop_jobs(jobs)
            raise
        return [_result(job) for job in jobs]

    # -- what subclasses may add --------------------------------------------------------
    def submit(self, executor: Any, job_params: list[Any]) -> list[Any]:
        return list(executor.map_array(self, *zip(*job_params)))

    def submission_failed(self, error: Exception) -> Exception:
        """The error to raise when the jobs could not be submitted at all."""
        return error

    def job_done(self, job: Any) -> bool:
        return bool(job.done())

    def check_jobs(self, jobs: Sequence[Any]) -> None:
        """Called about every second while jobs run; raise to end the launch (the jobs are stopped)."""

    def stop_jobs(self, jobs: Sequence[Any]) -> None:
        deadline = time.monotonic() + GRACEFUL_STOP_S
        while time.monotonic() < deadline and not all(job.done() for job in jobs):
            time.sleep(0.2)
        for job in jobs:
            if not job.done():
                job.cancel(check=False)

    # -- upstream's executor, from the launcher's parameters -----------------------------
    def _executor(self, submitit: Any) -> Any:
        init_keys = {"max_num_timeout", "python"}
        init_params: dict[str, Any] = {"folder": self.params["submitit_folder"]}
        init_params.update(
            {f"{self.cluster}_{k}": v for k, v in self.params.items() if k in init_keys}
        )
        executor = submitit.AutoExecutor(cluster=self.cluster, **init_params)
        base_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        skipped = init_keys | {"submitit_folder"}
        executor.update_parameters(
            **{
                (k if k in base_keys else f"{self.cluster}_{k}"): v
                for k, v in self.params.items()
                if k not in skipped
            }
        )
        return executor


def _result(job: Any) -> JobReturn:
    try:
        return job.results()[0]
    except Exception as error:  # noqa: BLE001 - killed, lost or failed outside the task: a failed job
        job_return = JobReturn(status=JobStatus.FAILED)
        job_return.return_value = RuntimeError(
            f"job {job.job_id} ended without a result: {_first_line(error)}"
        )
        return job_return


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
