"""A trial from claim to tell: who runs which trial, the next trial to run, and the one tell.

Runs in whichever process runs trials (`worker.py`, `packed_worker.py`, runners.py `run_batches`). It owns
the trials' bookkeeping in the study (the user attributes `sweep_owner`, `heartbeat_seq`,
`continued`, `fail_reason` and the run's figures), which trial a process gets next (an
abandoned one first, else a new one) and how it ended.

Whoever runs a trial *claims* it: user attribute `sweep_owner` = host, pid, the sweep's id, the
worker's index and a random token. While the trial runs, its owner keeps a heartbeat: the user
attribute `heartbeat_seq`, a counter raised every `heartbeat_interval` seconds.

A RUNNING trial is abandoned, and may be taken over and continued from its checkpoint, when:
- its owner released it (Ctrl-C, SIGTERM: the run stopped in good order);
- its owner is a process of this host that is gone (SIGKILL, a crash): known at once;
- its owner's heartbeat did not move for `grace_period` seconds (a lost host, a dead SLURM job);
- nobody claimed it for `claim_window_s` seconds (its asker died between ask and claim).

No clock of another host is ever read: "did not move for N seconds" is measured on this
process's own monotonic clock, between two looks at the storage. Hosts with skewed clocks
therefore cannot fail or take over each other's live trials; the price is that a process needs
`grace_period` seconds of watching before it takes over a trial from another host (same-host
owners are checked by pid, at once). A continued trial keeps its number, parameters and folder.

A trial's run only reports its validations to the pruner and writes its state in metrics.json
(`trial_hook.py`); its runner tells the study here, in `tell_outcome`, the only `study.tell`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.errors import one_line
from makemore_sweep.sweeper.study import SearchSpace, count_states, finished, suggest

log = logging.getLogger(__name__)

OWNER_ATTR = "sweep_owner"
HEARTBEAT_ATTR = "heartbeat_seq"
HOST = socket.gethostname()
# A sweep claims a trial (writes its owner) right after asking for it. A RUNNING trial still
# without an owner after this long was asked by a process killed in between.
CLAIM_WINDOW_S = 10.0
CONTINUED_ATTR = "continued"  # how many times the trial was taken over and continued
CONTINUED_REASON_ATTR = "continued_reason"


def process_is_alive(pid: int) -> bool:
    """True while `pid` runs on this host (a zombie, killed but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        # The state letter follows the command name in parentheses, which may hold spaces.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class Abandoned:
    number: int
    reason: str
    key: str  # its owner and heartbeat as seen (see _lease_key)


def _lease_key(trial: FrozenTrial) -> str:
    """What changes whenever a trial is claimed or beats: its owner and heartbeat."""
    return repr((trial.user_attrs.get(OWNER_ATTR), trial.user_attrs.get(HEARTBEAT_ATTR)))


@dataclass
class _Sighting:
    """What a trial's lease looked like when this process first saw it in that state."""

    key: str
    since: float = field(default_factory=time.monotonic)


class TrialLeases:
    """Claims, heartbeats and abandonment checks of one process (sweep or worker) on one study."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        heartbeat_interval: float,
        grace_period: float,
        *,
        sweep_id: str | None = None,
        worker: int | None = None,
        claim_window_s: float = CLAIM_WINDOW_S,
    ) -> None:
        self.study = study
        self.storage = storage
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.claim_window_s = claim_window_s
        self.owner: dict[str, Any] = {
            "host": HOST,
            "pid": os.getpid(),
            "sweep_id": sweep_id or uuid.uuid4().hex,
            "worker": worker,
            "token": uuid.uuid4().hex,
        }
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._sightings: dict[int, _Sighting] = {}
        self._beats = 0

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    # -- this process's trials ----------------------------------------------------------
    def claim(self, trial_id: int) -> None:
        self.storage.set_trial_user_attr(trial_id, OWNER_ATTR, self.owner)
        self._beat(trial_id)

    def take_over(self, abandoned: Abandoned) -> bool:
        """Continue an abandoned trial, settled by the storage: put back WAITING, then popped.

        The trial keeps its number, parameters and user attributes. Optuna's WAITING → RUNNING
        transition is atomic on every storage (a row update on a database, a journal entry
        under the journal's lock), so of several processes only one pops it; the others get
        False. The caller must hold the study's claim lock (storage.claim_lock): the trial is
        read again first and taken only as it was seen, and only under the lock does nobody
        put it back between another process's pop and its claim.
        """
        trial_id = self.trial_id(abandoned.number)
        try:
            frozen = self.storage.get_trial(trial_id)
            if frozen.state != TrialState.RUNNING or _lease_key(frozen) != abandoned.key:
                return False  # finished, or claimed by another process since it was seen
            self.storage.set_trial_state_values(trial_id, state=TrialState.WAITING)
            if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return False  # another process's ask popped it first: it is continued there
        except UpdateFinishedTrialError:
            return False
        self.claim(trial_id)
        return True

    def release(self, trial_id: int) -> None:
        """Say that this trial stopped in good order: the next free worker or run continues it."""
        try:
            self.storage.set_trial_user_attr(trial_id, OWNER_ATTR, {**self.owner, "released": True})
        except UpdateFinishedTrialError:
            pass

    def _beat(self, trial_id: int) -> None:
        self._beats += 1
        self.storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, self._beats)

    @contextmanager
    def keep_alive(self, trial_ids: list[int] | set[int]) -> Iterator[None]:
        """Beat for these trials in a background thread while the block runs (the trials train).

        A set is read as it changes: a packed worker adds and removes its trials as they come
        and go (sweeper/packed_worker.py).
        """
        pending = trial_ids if isinstance(trial_ids, set) else set(trial_ids)
        stop = threading.Event()

        def beat_until_stopped() -> None:
            while not stop.wait(self.heartbeat_interval):
                for trial_id in list(pending):
                    try:
                        self._beat(trial_id)
                    except UpdateFinishedTrialError:
                        pending.discard(trial_id)  # failed as abandoned by another process
                    except Exception as error:  # noqa: BLE001 - a busy database: the next beat will do
                        log.debug("Heartbeat of trial id %d skipped: %s", trial_id, error)

        thread = threading.Thread(target=beat_until_stopped, name="optuna-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- everybody's trials -------------------------------------------------------------
    def running(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def abandoned(self) -> list[Abandoned]:
        """The RUNNING trials that nobody runs any more, oldest first, each with the reason."""
        running = self.running()
        seen = {t.number for t in running}
        self._sightings = {n: s for n, s in self._sightings.items() if n in seen}
        found = []
        for trial in running:
            reason = self._abandonment_reason(trial)
            if reason is not None:
                found.append(Abandoned(trial.number, reason, _lease_key(trial)))
        return found

    def unclaimed_running(self) -> list[FrozenTrial]:
        """RUNNING trials with no owner yet: being claimed now, or orphans (see CLAIM_WINDOW_S)."""
        return [t for t in self.running() if OWNER_ATTR not in t.user_attrs]

    def _unchanged_for(self, trial: FrozenTrial) -> float:
        """Seconds (on our own clock) since this trial's owner or heartbeat last changed."""
        key = _lease_key(trial)
        sighting = self._sightings.get(trial.number)
        if sighting is None or sighting.key != key:
            self._sightings[trial.number] = _Sighting(key)
            return 0.0
        return time.monotonic() - sighting.since

    def _abandonment_reason(self, trial: FrozenTrial) -> str | None:
        unchanged_s = self._unchanged_for(trial)
        owner = trial.user_attrs.get(OWNER_ATTR)
        if owner is None:
            return (
                f"never claimed for {self.claim_window_s:g} s"
                if unchanged_s > self.claim_window_s
                else None
            )
        if owner.get("released"):
            return "stopped and released by its worker"
        if owner.get("token") == self.owner["token"]:
            return None
        if owner.get("host") == HOST:
            pid = int(owner.get("pid", -1))
            if pid != os.getpid() and not process_is_alive(pid):
                return f"its process {pid} on {HOST} is gone"
            if pid != os.getpid():
                return None
        if unchanged_s > self.grace_period:
            return f"no heartbeat from {owner.get('host')} for {self.grace_period:g} s"
        return None


# --- the next trial -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedTrial:
    number: int
    trial_id: int
    params: dict[str, Any]
    continued_because: str | None = None  # why it is continued; None for a new trial

    def say_continued(self, from_checkpoint: bool) -> None:
        """The worker's line for a continued trial, as it starts again."""
        resumed = " from its checkpoint" if from_checkpoint else ""
        print(f"[trial {self.number}] continued ({self.continued_because}){resumed}", flush=True)


class TrialSource:
    """Hands out trials of one study to one process, toward `n_trials` finished trials in all."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        leases: TrialLeases,
        space: SearchSpace,
        config: DictConfig,
        n_trials: int,
        claim_lock: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self.claim_lock = claim_lock  # storage.claim_lock of the study, where there is one
        self.study = study
        self.storage = storage
        self.leases = leases
        self.space = space
        self.config = config
        self.n_trials = n_trials

    def missing(self) -> int:
        """Trials nobody runs yet: n_trials less the finished ones and those under way (live or not)."""
        counts = count_states(self.study)
        return self.n_trials - finished(counts) - counts[TrialState.RUNNING]

    def done(self) -> bool:
        return finished(count_states(self.study)) >= self.n_trials

    def _take_abandoned(self) -> ClaimedTrial | None:
        """Take over the oldest abandoned trial, if any (another process may win it: then the
        next). The caller holds the claim lock."""
        for abandoned in self.leases.abandoned():
            if self.leases.take_over(abandoned):
                return self._continued(abandoned.number, abandoned.reason)
        return None

    def _continued(self, number: int, reason: str) -> ClaimedTrial:
        trial_id = self.leases.trial_id(number)
        frozen = self.storage.get_trial(trial_id)
        times = int(frozen.user_attrs.get(CONTINUED_ATTR, 0)) + 1
        self.storage.set_trial_user_attr(trial_id, CONTINUED_ATTR, times)
        self.storage.set_trial_user_attr(trial_id, CONTINUED_REASON_ATTR, reason)
        params = self._complete_params(trial_id, dict(frozen.params))
        return ClaimedTrial(number, trial_id, params, continued_because=reason)

    def ask_new(self) -> ClaimedTrial:
        """A new trial from the sampler (or the enqueued queue). A trial put back by another
        process's takeover may be popped here first: it is continued, not started afresh."""
        trial = self.space.suggest(self.study, self.config)
        trial_id = self.leases.trial_id(trial.number)
        earlier_owner = self.storage.get_trial(trial_id).user_attrs.get(OWNER_ATTR)
        self.leases.claim(trial_id)
        if earlier_owner is not None:
            return self._continued(trial.number, "put back by another process's takeover")
        return ClaimedTrial(trial.number, trial_id, dict(trial.params))

    def next(self) -> ClaimedTrial | None:
        """An abandoned trial to continue, else a new one while the study has room, else None."""
        batch = self.next_batch(1)
        return batch[0] if batch else None

    def next_batch(self, size: int) -> list[ClaimedTrial]:
        """Up to `size` trials, taken as `next` takes one (abandoned ones first), under one hold
        of the claim lock: the sweep process's batches with one job per trial."""
        batch: list[ClaimedTrial] = []
        with self.claim_lock():
            while len(batch) < size and (continued := self._take_abandoned()) is not None:
                batch.append(continued)
            while len(batch) < size and self.missing() > 0:
                batch.append(self.ask_new())
        return batch

    def _complete_params(self, trial_id: int, params: dict[str, Any]) -> dict[str, Any]:
        """Sample what a trial asked by a process killed mid-way never got (rare), so it can run."""
        missing = {name: d for name, d in self.space.distributions.items() if name not in params}
        if not missing:
            return params
        trial = optuna.trial.Trial(self.study, trial_id)
        for name, distribution in missing.items():
            params[name] = suggest(trial, name, distribution)
        return params


FAIL_REASON_ATTR = "fail_reason"
ENDED_STATES = ("completed", "pruned", "failed")  # metrics.json states of a run that has ended
# Figures of metrics.json copied to the trial's user attributes, for reports and the sweep summary.
LOSS_ATTRS = ("val_loss", "test_loss", "train_loss")
OUTCOME_ATTRS = (*LOSS_ATTRS, "n_params", "steps", "train_time_s", "state", "pruned_at_step")


@dataclass(frozen=True)
class TrialEnd:
    """How a trial's run ended, as its runner saw it: what the run returned (its objectives'
    values), or why it failed, and its metrics.json when it wrote one."""

    returned: Any = None
    failure: str | None = None
    metrics: dict[str, Any] | None = None
    run_dir: Path | None = None

    @classmethod
    def of_job(
        cls,
        job_return: JobReturn | BaseException,
        metrics: dict[str, Any] | None,
        run_dir: Path | None,
    ) -> TrialEnd:
        """A trial's Hydra job, with this attempt's metrics.json (None: none written)."""
        failure = failure_reason(job_return)
        returned = job_return.return_value if failure is None else None  # type: ignore[union-attr]
        return cls(returned, failure, metrics, run_dir)

    @property
    def pruned(self) -> bool:
        """The pruner stopped the run (an error in its last records does not undo that)."""
        return (self.metrics or {}).get("state") == "pruned"


def failure_reason(job_return: JobReturn | BaseException) -> str | None:
    """One line on why a job failed; None for a job that completed."""
    if isinstance(job_return, BaseException):
        return one_line(job_return)
    if job_return.status == JobStatus.COMPLETED:
        return None
    try:
        # Reading it re-raises the job's exception, and Hydra prints "Error executing job with
        # overrides" each time: the sweep says why in its own line instead.
        with contextlib.redirect_stderr(io.StringIO()):
            _ = job_return.return_value
    except BaseException as error:  # noqa: BLE001 - the job's own error, whatever it is, is the reason
        return one_line(error)
    return f"the job ended with status {job_return.status.name}"


def objective_values(
    returned: Any, objectives: Sequence[str]
) -> tuple[list[float] | None, str | None]:
    raw = list(returned) if isinstance(returned, (list, tuple)) else [returned]
    if len(raw) != len(objectives):
        return None, f"the job returned {returned!r}, not values of {', '.join(objectives)}"
    values: list[float] = []
    for name, value in zip(objectives, raw):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            return None, f"the job returned {name} = {value}, which an objective cannot be"
        values.append(number)
    return values, None


def tell_outcome(
    study: optuna.Study,
    storage: BaseStorage,
    trial_id: int,
    end: TrialEnd,
    objectives: Sequence[str] = ("val_loss",),
) -> FrozenTrial:
    """The one tell of a trial: its run's figures as user attributes, then PRUNED (Optuna keeps
    the last reported dev loss as its value), COMPLETE with the returned objectives, or FAIL
    with one line of reason. A trial already finished (failed as abandoned by another process)
    is kept as it is."""
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        return frozen
    try:
        if end.metrics is not None:
            keep_figures(storage, trial_id, end.metrics, end.run_dir)
        if end.pruned:
            study.tell(frozen.number, state=TrialState.PRUNED)
            return storage.get_trial(trial_id)
        values, reason = (
            (None, end.failure) if end.failure else objective_values(end.returned, objectives)
        )
        if values is not None:
            study.tell(frozen.number, values=values)
        else:
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason or "no objective values")
            study.tell(frozen.number, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        log.warning(
            "Optuna trial %d was already finished by another process; its outcome is in %s.",
            frozen.number,
            end.run_dir,
        )
    return storage.get_trial(trial_id)


def hand_back(
    study: optuna.Study,
    leases: TrialLeases,
    trial_id: int,
    written: dict[str, Any] | None,
    run_dir: Path | None,
    objectives: Sequence[str] = ("val_loss",),
) -> None:
    """The worker stops (Ctrl-C, SIGTERM) with this trial in hand, `written` its metrics.json
    of this attempt if any. A run that had ended (completed, pruned or failed, only its last
    records cut short) is told as it ended; any other keeps its figures and is released, for
    the next worker to go on from its checkpoint."""
    state = (written or {}).get("state")
    if written is not None and state in ENDED_STATES:
        returned = [written.get(key) for key in objectives]
        failure = str(written.get("error") or "the run failed") if state == "failed" else None
        end = TrialEnd(returned, failure, written, run_dir)
        tell_outcome(study, leases.storage, trial_id, end, objectives)
        return
    if written is not None:
        keep_figures(leases.storage, trial_id, written, run_dir)
    leases.release(trial_id)


def keep_figures(
    storage: BaseStorage, trial_id: int, metrics: dict[str, Any], run_dir: Path | None
) -> None:
    """The run's figures (and folder) as the trial's user attributes, for reports and the
    sweep's lines: before its tell, and for a trial interrupted and handed back."""
    if run_dir is not None:
        storage.set_trial_user_attr(trial_id, "run_dir", str(run_dir.resolve()))
    for key in OUTCOME_ATTRS:
        if metrics.get(key) is not None:
            storage.set_trial_user_attr(trial_id, key, metrics[key])
