"""`hydra/launcher=local`: a batch of jobs as parallel processes on this machine, sharing its cores.

hydra-submitit-launcher's local executor starts every job of a batch at once, each a separate
Python process (trials of a batch, or a sweep's long-lived workers). Left alone, each PyTorch process would use every core and they would fight over
them; this launcher gives each job `threads = cores // jobs in the batch` unless the
configuration already sets `threads`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from makemore_sweep.cluster.submitit_jobs import GRACEFUL_STOP_S, PatientSubmititLauncher

THREADS_KEY = "threads"


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def split_threads(
    job_overrides: Sequence[Sequence[str]], cores: int, jobs: int | None = None
) -> list[list[str]]:
    """Add `threads=N` to each job that does not set it, N = cores // jobs at once (≥ 1; by
    default the jobs given)."""
    per_job = max(1, cores // max(1, jobs or len(job_overrides)))
    split = []
    for overrides in job_overrides:
        sets_threads = any(o.lstrip("+~").startswith(f"{THREADS_KEY}=") for o in overrides)
        split.append(list(overrides) if sets_threads else [*overrides, f"{THREADS_KEY}={per_job}"])
    return split


class ThreadSplittingLocalLauncher(PatientSubmititLauncher):
    cluster = "local"
    # Jobs that run at once besides those of one launch: a sweep starts its workers one launch
    # each, and they share the cores all the same.
    parallel_jobs = 0

    def start(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        assert self.config is not None
        if self.config.get(THREADS_KEY) is None:
            jobs = max(len(job_overrides), self.parallel_jobs)
            job_overrides = split_threads(job_overrides, available_cores(), jobs)
        return super().start(job_overrides, initial_job_idx)

    def submit(self, executor: Any, job_params: list[Any]) -> list[Any]:
        """Start the jobs deaf to Ctrl-C: the terminal's SIGINT would reach them too, and submitit's
        local controller answers it with a traceback and a SIGKILL of the run one second later.
        The sweep passes Ctrl-C on itself, as SIGTERM (stop_jobs), which runs stop in good order."""
        if threading.current_thread() is not threading.main_thread():
            return super().submit(executor, job_params)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the job processes
        try:
            return super().submit(executor, job_params)
        finally:
            signal.signal(signal.SIGINT, previous)

    def stop_jobs(self, jobs: Sequence[Any]) -> None:
        # A local job's id is the pid of submitit's controller, which forwards SIGTERM to the run.
        for sig, wait_s in ((signal.SIGTERM, GRACEFUL_STOP_S), (signal.SIGKILL, 0.0)):
            for job in jobs:
                if not job.done():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(job.job_id), sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and not all(job.done() for job in jobs):
                time.sleep(0.2)
