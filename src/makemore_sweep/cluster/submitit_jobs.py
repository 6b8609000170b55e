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
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from makemore_sweep.errors import JobLost

log = logging.getLogger(__name__)

POLL_S = 1.0
# After Ctrl-C, jobs on this machine got the signal too: give them this long to record their
# trials in good order before they are stopped.
GRACEFUL_STOP_S = 20.0


class PatientSubmititLauncher(BaseSubmititLauncher):
    # submitit's executor name ("local" or "slurm"), kept by us rather than read from upstream.
    cluster = "local"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # Set by the sweep to stop launches waiting in other threads (one launch per worker).
        self.stop_requested = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        # submitit pickles the launcher into each job; an Event does not pickle and means
        # nothing there.
        state = dict(self.__dict__)
        state.pop("stop_requested", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stop_requested = threading.Event()

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        return self.wait(self.start(job_overrides, initial_job_idx))

    def start(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        """Submit the jobs and return at once: a sweep starts each worker alone (in its main
        thread, where signals can be set) and waits for each in a thread of its own."""
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
            return self.submit(executor, job_params)
        except Exception as error:  # noqa: BLE001 - sbatch and submitit errors vary; subclasses explain them
            raise self.submission_failed(error) from None

    def wait(self, jobs: Sequence[Any]) -> list[JobReturn]:
        """Wait for every job, whatever happens to one; a dead one becomes a failed JobReturn."""
        try:
            while not all(self.job_done(job) for job in jobs):
                if self.stop_requested.is_set():  # the sweep stops: another thread's Ctrl-C
                    raise KeyboardInterrupt
                self.check_jobs(jobs)
                time.sleep(POLL_S)
        except BaseException:
            self.stop_jobs(jobs)
            raise
        return [self.result(job) for job in jobs]

    def result(self, job: Any) -> JobReturn:
        """The job's JobReturn; a failed one when it ended without a result.

        A job is done (job_done) once its result file is there or it has left the queue for
        good; without the file it was killed, and submitit's own wait would ask the cluster's
        accounting (sacct), which may not exist, forever.
        """
        if not job.paths.result_pickle.exists():
            return _no_result(job, f"in state {self.final_state(job)}")
        return _result(job)

    def final_state(self, job: Any) -> str:
        """How a job that ended without a result was last seen (subclasses know better)."""
        return str(job.state)

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
    from submitit.core.utils import FailedJobError

    try:
        return job.results()[0]
    except FailedJobError as error:  # the job raised: its traceback's last line is the cause
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return _no_result(job, lines[-1] if lines else "it failed")
    except Exception as error:  # noqa: BLE001 - a damaged result: a failed job
        return _no_result(job, type(error).__name__)


def _no_result(job: Any, how: str) -> JobReturn:
    # submitit's own message names its pickle paths; how it ended says what happened.
    job_return = JobReturn(status=JobStatus.FAILED)
    job_return.return_value = JobLost(f"its job {job.job_id} ended without a result, {how}")
    return job_return
