"""Telling live trials from abandoned ones, so resumed and cooperating sweeps stay correct.

Every sweep process *claims* the trials it launches (user attribute `sweep_owner`: host, pid
and a random id of the process) and keeps a heartbeat on them while they run: Optuna's own
heartbeat on SQL storages (timestamped by the database server, so hosts' clocks do not
matter), a `heartbeat_unix` user attribute on journal files (which have no native one).

Before each batch a sweep process fails the RUNNING trials that nobody is running any more:
- claimed by a process of this host that is gone: a killed sweep, failed at once on re-run;
- whose heartbeat is older than `grace_period` seconds: a sweep on a crashed or lost host;
- never claimed, and started more than `grace_period` seconds ago: the owner died between
  asking for the trial and claiming it.
It never fails a trial of a live process, even one on another host with a fresh heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

OWNER_ATTR = "sweep_owner"
HEARTBEAT_ATTR = "heartbeat_unix"
FAIL_REASON_ATTR = "fail_reason"
HOST = socket.gethostname()
# A sweep claims a trial (writes its owner) right after asking for it. A RUNNING trial without
# an owner after this long was asked by a process killed in between, and nobody will run it.
CLAIM_WINDOW_S = 10.0


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


class TrialLeases:
    """Claims, heartbeats and abandonment checks for one sweep process on one study."""

    def __init__(self, study: optuna.Study, storage: BaseStorage, heartbeat_interval: int, grace_period: int) -> None:
        self.study = study
        self.storage = storage
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.owner = {"host": HOST, "pid": os.getpid(), "sweep_id": uuid.uuid4().hex}
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._native_heartbeat = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    # -- this process's trials ----------------------------------------------------------
    def claim(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(OWNER_ATTR, self.owner)
        self._beat(self.trial_id(trial.number))

    def _beat(self, trial_id: int) -> None:
        if self._native_heartbeat:
            self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        else:
            self.storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

    @contextmanager
    def keep_alive(self, trials: list[optuna.Trial]) -> Iterator[None]:
        """Beat for `trials` in a background thread while the block runs (the jobs train)."""
        pending = {self.trial_id(t.number) for t in trials}
        stop = threading.Event()

        def beat_until_stopped() -> None:
            while not stop.wait(self.heartbeat_interval):
                for trial_id in list(pending):
                    try:
                        self._beat(trial_id)
                    except UpdateFinishedTrialError:
                        pending.discard(trial_id)  # the job recorded it PRUNED already
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
    def fail_abandoned(self) -> list[Abandoned]:
        """FAIL every RUNNING trial that no live process runs; return what was failed and why."""
        running_before = {t.number for t in self._running()}
        if self._native_heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        running = self._running()
        stale = running_before - {t.number for t in running}
        abandoned = [Abandoned(n, f"no heartbeat for {self.grace_period} s") for n in sorted(stale)]
        for trial in running:
            reason = self._abandonment_reason(trial)
            if reason is None:
                continue
            try:
                trial_id = self.trial_id(trial.number)
                self.storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, f"abandoned: {reason}")
                if self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    abandoned.append(Abandoned(trial.number, reason))
            except UpdateFinishedTrialError:
                pass  # it finished, or another process failed it first
        return abandoned

    def unclaimed_running(self) -> list[FrozenTrial]:
        """RUNNING trials with no owner yet: being claimed now, or orphans (see CLAIM_WINDOW_S)."""
        return [t for t in self._running() if OWNER_ATTR not in t.user_attrs]

    def _running(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def _abandonment_reason(self, trial: FrozenTrial) -> str | None:
        owner = trial.user_attrs.get(OWNER_ATTR)
        if owner is None:
            started = trial.datetime_start
            if started is not None and (datetime.now() - started).total_seconds() > CLAIM_WINDOW_S:
                return f"never claimed by a sweep process since {started:%Y-%m-%d %H:%M:%S}"
            return None
        if owner.get("sweep_id") == self.owner["sweep_id"]:
            return None
        if owner.get("host") == HOST:
            pid = int(owner.get("pid", -1))
            if pid == os.getpid() or not process_is_alive(pid):
                return f"its sweep process {pid} on {HOST} is gone"
            return None
        if not self._native_heartbeat:
            last = trial.user_attrs.get(HEARTBEAT_ATTR)
            if last is not None and time.time() - float(last) > self.grace_period:
                return f"no heartbeat from {owner.get('host')} for {self.grace_period} s"
        return None
