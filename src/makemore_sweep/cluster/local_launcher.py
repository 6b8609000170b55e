"""`hydra/launcher=local`: a batch of jobs as parallel processes on this machine, sharing its cores.

hydra-submitit-launcher's local executor starts every job of a batch at once, each a separate
Python process (trials of a batch, or a sweep's long-lived workers). Left alone, each PyTorch process would use every core and they would fight over
them; this launcher gives each job `threads = cores // jobs in the batch` unless the
configuration already sets `threads`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hydra.core.utils import JobReturn

from makemore_sweep.cluster.submitit_jobs import PatientSubmititLauncher

THREADS_KEY = "threads"


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def split_threads(job_overrides: Sequence[Sequence[str]], cores: int) -> list[list[str]]:
    """Add `threads=N` to each job that does not set it, N = cores // number of jobs (≥ 1)."""
    per_job = max(1, cores // max(1, len(job_overrides)))
    split = []
    for overrides in job_overrides:
        sets_threads = any(o.lstrip("+~").startswith(f"{THREADS_KEY}=") for o in overrides)
        split.append(list(overrides) if sets_threads else [*overrides, f"{THREADS_KEY}={per_job}"])
    return split


class ThreadSplittingLocalLauncher(PatientSubmititLauncher):
    cluster = "local"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        if self.config.get(THREADS_KEY) is None:
            job_overrides = split_threads(job_overrides, available_cores())
        return super().launch(job_overrides, initial_job_idx)
