"""Recording what a trial's job ended with: COMPLETE with its dev loss, or FAIL with one line of reason.

PRUNED is recorded by the run itself (`trial_reporting.py`), after its metrics.json is written.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.errors import UserError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.leases import FAIL_REASON_ATTR, OWNER_ATTR


def job_result(job_return: JobReturn | BaseException) -> tuple[float, str | None]:
    """(dev loss, None) for a job that returned one, (nan, reason) for one that failed."""
    if isinstance(job_return, BaseException):
        return math.nan, one_line(job_return)
    if job_return.status == JobStatus.COMPLETED:
        try:
            value = float(job_return.return_value)
        except (TypeError, ValueError):
            return math.nan, f"the job returned {job_return.return_value!r}, not a dev loss"
        return (value, None) if math.isfinite(value) else (math.nan, f"the job returned a dev loss of {value}")
    try:
        _ = job_return.return_value  # re-raises the exception the job failed with
    except BaseException as error:  # noqa: BLE001 - the job's own error, whatever it is, is the reason
        return math.nan, one_line(error)
    return math.nan, f"the job ended with status {job_return.status.name}"


def one_line(error: Any) -> str:
    if isinstance(error, UserError):
        text = str(error)
    elif isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return mask_secrets(first)[:500]


def record_outcome(
    study: optuna.Study, storage: BaseStorage, trial_id: int, job_return: JobReturn | BaseException
) -> FrozenTrial:
    """COMPLETE with the returned dev loss, or FAIL with the reason; a trial already finished is kept."""
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        return frozen
    value, reason = job_result(job_return)
    try:
        if reason is None:
            study.tell(frozen.number, values=[value])
        else:
            fail_trial(study, storage, trial_id, reason)
    except UpdateFinishedTrialError:
        pass  # another process finished it meanwhile
    return storage.get_trial(trial_id)


def fail_trial(study: optuna.Study, storage: BaseStorage, trial_id: int, reason: str) -> None:
    try:
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
        study.tell(storage.get_trial_number_from_id(trial_id), state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        pass


def failures_of_sweep(study: optuna.Study, sweep_id: str) -> list[FrozenTrial]:
    """The FAIL trials run by the processes of one sweep (what max_failure_rate counts)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if (t.user_attrs.get(OWNER_ATTR) or {}).get("sweep_id") == sweep_id
    ]
