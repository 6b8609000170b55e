"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM jobs, and jobs that can never start reported.

A job may pend for a reason that will not go away by itself: a partition that cannot run it
(PartitionConfig), a node feature or GRES no node has (BadConstraints, or sbatch refusing the
job outright), an account or QOS that does not exist (InvalidAccount, InvalidQOS), a request
above the QOS or association limits. Waiting would last forever, so the launch looks at its
pending jobs every few seconds (`squeue`), cancels them and ends with one sentence that names
the reason and the `hydra.launcher.*` keys to change. Jobs pending for Resources, Priority or
a per-user job limit are left to wait.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from makemore_sweep.cluster.submitit_jobs import PatientSubmititLauncher
from makemore_sweep.errors import UserError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0
# A job gone from squeue without a result file is taken for dead after this long (its result
# may still be on its way through a network file system).
LEFT_QUEUE_GRACE_S = 30.0
# Reasons a pending job keeps for good, with the launcher keys that could fix each.
FATAL_REASONS: dict[str, tuple[str, ...]] = {
    "PartitionConfig": ("partition", "gpus_per_node", "cpus_per_task", "mem_gb"),
    "PartitionNodeLimit": ("partition", "nodes"),
    "PartitionTimeLimit": ("timeout_min", "partition"),
    "BadConstraints": ("constraint", "gpus_per_node", "cpus_per_task", "mem_gb", "partition"),
    "InvalidAccount": ("account",),
    "InvalidQOS": ("qos",),
}
# QOSMaxCpuPerJobLimit, AssocMaxGRESPerJob, QOSMaxWallDurationPerJobLimit, ...: above a per-job limit.
PER_JOB_LIMIT = re.compile(r"^(QOS|Assoc)(Max|Min)\w*PerJob\w*$")
LIMIT_KEYS = {
    "Cpu": "cpus_per_task",
    "GRES": "gpus_per_node",
    "Gres": "gpus_per_node",
    "Mem": "mem_gb",
    "Wall": "timeout_min",
    "Node": "nodes",
}


class JobsCannotStart(UserError):
    """SLURM refused the jobs, or they pend for a reason that will not go away."""


# Final states of a job that squeue may still list (a preempted job is requeued: not final).
ENDED_STATES = frozenset(
    {
        "CANCELLED",
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
    }
)


class CheckedSlurmLauncher(PatientSubmititLauncher):
    cluster = "slurm"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # Shared by the launches of one sweep, which wait in threads of their own (one worker
        # each): keyed by job, so each launch looks after its own jobs, and one squeue call
        # every CHECK_EVERY_S answers them all (a sweep of 64 workers must not run 64).
        self._missing_since: dict[str, float] = {}
        self._last_state: dict[str, str] = {}
        self._asked_at: dict[str, float] = {}  # job id → when a launch last asked about it
        self._first_asked: dict[str, float] = {}
        self._listing: dict[str, tuple[str, str]] | None = None
        self._listing_started = self._listed_at = -math.inf
        self._queue_lock = threading.Lock()

    def start(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        show_sacct_warning_once()
        return super().start(job_overrides, initial_job_idx)

    def submission_failed(self, error: Exception) -> Exception:
        text = " ".join(str(error).split())
        said = re.search(r"Batch job submission failed:\s*(.+?)(?:\s*$|\.)", text)
        reason = said.group(1) if said else text[:300]
        lowered = reason.lower()
        named = [key for key in ("partition", "account", "qos") if key in lowered]
        keys = tuple(named) if named else FATAL_REASONS["BadConstraints"]
        return cannot_start(f"sbatch refused them ({reason})", self.params, keys)

    def job_done(self, job: Any) -> bool:
        """Its result is written, or it left the queue without one (killed, node lost).

        submitit would ask `sacct` at every look, which fails (and says so on stderr) where the
        cluster keeps no accounting; `squeue` (check_jobs) and the result file are enough.
        """
        if job.paths.result_pickle.exists():
            return True
        since = self._missing_since.get(str(job.job_id))
        return since is not None and time.monotonic() - since > LEFT_QUEUE_GRACE_S

    def __getstate__(self) -> dict[str, Any]:
        # The waiting state of this sweep's launches means nothing in a job, and other threads
        # change it while a replacement worker's job is pickled.
        state = super().__getstate__()
        for name in (
            "_missing_since",
            "_last_state",
            "_asked_at",
            "_first_asked",
            "_listing",
            "_listing_started",
            "_listed_at",
        ):
            state.pop(name, None)
        state.pop("_queue_lock", None)  # a lock cannot be pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # In the job: the same object, with fresh (unused) waiting state.
        super().__setstate__(state)
        self._missing_since, self._last_state, self._asked_at, self._first_asked = {}, {}, {}, {}
        self._listing, self._queue_lock = None, threading.Lock()
        self._listing_started = self._listed_at = -math.inf

    def final_state(self, job: Any) -> str:
        # submitit's job.state asks sacct, which a cluster without accounting does not have.
        last = self._last_state.get(str(job.job_id))
        if last in ENDED_STATES:
            return f"{last}, then gone from the queue"
        return f"gone from the queue (last seen {last or 'nowhere'})"

    def shared_listing(self, job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
        """The queue as the sweep's last squeue call saw it, at most CHECK_EVERY_S old, listing
        only jobs asked about before that call started (the others are left out of it).

        Each launch asks about its own jobs; one call lists every job a launch asked about in
        the last two periods (launches ask about every second, so ended launches drop out).
        None when squeue failed. The listing's age counts from the call's end, so threads that
        waited for a slow call use its answer instead of calling again one after another.
        """
        with self._queue_lock:
            now = time.monotonic()
            for job_id in job_ids:
                self._asked_at[job_id] = now
                self._first_asked.setdefault(job_id, now)
            if now - self._listed_at >= CHECK_EVERY_S:
                recent = {j for j, at in self._asked_at.items() if now - at < 2 * CHECK_EVERY_S}
                self._asked_at = {j: self._asked_at[j] for j in recent}
                self._listing = queue(sorted({job_id.split("_")[0] for job_id in recent}))
                self._listing_started, self._listed_at = now, time.monotonic()
            if self._listing is None:
                return None
            # A job first asked about after the call started may simply be too new for it.
            return {
                **self._listing,
                **{
                    j: ("UNKNOWN", "not yet listed")
                    for j in job_ids
                    if self._first_asked[j] >= self._listing_started and j not in self._listing
                },
            }

    def check_jobs(self, jobs: Sequence[Any]) -> None:
        listed = self.shared_listing([str(job.job_id) for job in jobs])
        if listed is None:
            return  # squeue failed this time: look again later
        for job in jobs:
            job_id = str(job.job_id)
            state = listed.get(job_id, ("", ""))[0]
            # squeue keeps an ended job listed for a while (MinJobAge) in its final state.
            if state and state != "UNKNOWN":
                self._last_state[job_id] = state
            if state and state not in ENDED_STATES:
                self._missing_since.pop(job_id, None)
            else:
                self._missing_since.setdefault(job_id, time.monotonic())
        own = {str(job.job_id) for job in jobs}
        for job_id, (state, reason) in listed.items():
            if state != "PENDING" or job_id not in own:
                continue
            keys = FATAL_REASONS.get(reason)
            if keys is None and PER_JOB_LIMIT.match(reason):
                account_or_qos = "account" if reason.startswith("Assoc") else "qos"
                keys = (*(k for part, k in LIMIT_KEYS.items() if part in reason), account_or_qos)
            if keys is not None:
                raise cannot_start(f"job {job_id} pends with reason {reason}", self.params, keys)

    def stop_jobs(self, jobs: Sequence[Any]) -> None:
        for job in jobs:  # scancel: SIGTERM, so the trials record and release themselves
            if not job.paths.result_pickle.exists():
                job.cancel(check=False)


def queue(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} of the queued jobs among `job_ids`, one per array task; None if squeue failed."""
    if not job_ids:
        return {}
    try:
        listed = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(job_ids)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.debug("squeue failed: %s", error)
        return None
    if listed.returncode != 0 and "Invalid job id" not in listed.stderr:
        return None
    rows = [line.split("|", 2) for line in listed.stdout.splitlines() if line.count("|") == 2]
    return {job_id.strip(): (state.strip(), reason.strip()) for job_id, state, reason in rows}


@dataclass(frozen=True)
class PartitionNodes:
    """The most a node of the partition offers (from sinfo)."""

    cpus: int
    mem_mb: int
    has_gpus: bool


def partition_nodes(partition: str | None) -> PartitionNodes | None:
    command = ["sinfo", "-h", "-o", "%G|%c|%m", *(["-p", partition] if partition else [])]
    try:
        listed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.split("|") for line in listed.stdout.splitlines() if line.count("|") == 2]
    if not rows:
        return None

    def number(text: str) -> int:
        digits = re.match(r"\d+", text.strip())
        return int(digits.group(0)) if digits else 0

    return PartitionNodes(
        cpus=max(number(c) for _, c, _ in rows),
        mem_mb=max(number(m) for _, _, m in rows),
        has_gpus=any("gpu" in g for g, _, _ in rows),
    )


def cannot_start(what: str, params: dict[str, Any], keys: Sequence[str]) -> JobsCannotStart:
    """One sentence: what SLURM said, what in the request the partition cannot give, what to change."""
    nodes = partition_nodes(params.get("partition"))
    partition = params.get("partition") or "the default partition"
    found: list[tuple[str, str]] = []
    if nodes is not None:
        gpus = params.get("gpus_per_node") or params.get("gpus_per_task") or 0
        if gpus and not nodes.has_gpus:
            found.append(("gpus_per_node", f"{partition} has no GPUs but each job asks for {gpus}"))
        if (params.get("cpus_per_task") or 0) > nodes.cpus:
            found.append(
                (
                    "cpus_per_task",
                    f"its nodes have {nodes.cpus} CPUs, each job asks for {params['cpus_per_task']}",
                )
            )
        if (params.get("mem_gb") or 0) * 1024 > nodes.mem_mb > 0:
            found.append(
                (
                    "mem_gb",
                    f"its nodes have {nodes.mem_mb // 1024} GB, each job asks for {params['mem_gb']}",
                )
            )
    if found:
        why = "; ".join(reason for _, reason in found)
        change = [key for key, _ in found] + (["partition"] if "partition" in keys else [])
        return JobsCannotStart(
            f"SLURM cannot start the sweep's jobs: {what}, as {why}; change {_keys(change)}."
        )
    return JobsCannotStart(f"SLURM cannot start the sweep's jobs: {what}; change {_keys(keys)}.")


def _keys(keys: Sequence[str]) -> str:
    hints = {"gpus_per_node": " (0 on CPU-only partitions)"}
    named = [f"hydra.launcher.{key}{hints.get(key, '')}" for key in dict.fromkeys(keys)]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + f" or {named[-1]}"


class _FirstSacctWarningOnly(logging.Filter):
    """submitit warns at every poll when `sacct` fails (no accounting database): once is enough."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "sacct error" not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def show_sacct_warning_once() -> None:
    submitit_log = logging.getLogger(
        "submitit"
    )  # submitit's own logger name (submitit.core.logger)
    if not any(isinstance(f, _FirstSacctWarningOnly) for f in submitit_log.filters):
        submitit_log.addFilter(_FirstSacctWarningOnly())
