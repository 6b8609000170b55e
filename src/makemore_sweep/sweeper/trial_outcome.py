"""Recording what a trial's job ended with: COMPLETE with its objectives, or FAIL with one line of reason.

PRUNED is recorded by the run itself (`trial_reporting.py`), after its metrics.json is written.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.errors import JobLost, UserError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.leases import FAIL_REASON_ATTR, OWNER_ATTR


def job_result(
    job_return: JobReturn | BaseException, objectives: Sequence[str]
) -> tuple[list[float] | None, str | None]:
    """(the objectives' values, None) for a job that returned them, (None, reason) for one that failed.

    A trial's job returns its dev loss, or the list of the sweep's objectives (cli/train.py).
    """
    reason = failure_reason(job_return)
    if reason is not None:
        return None, reason
    assert isinstance(job_return, JobReturn)
    return objective_values(job_return.return_value, objectives)


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


def one_line(error: Any) -> str:
    if isinstance(error, (UserError, JobLost)):
        text = str(error)
    elif isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return mask_secrets(first)[:500]


def record_outcome(
    study: optuna.Study,
    storage: BaseStorage,
    trial_id: int,
    job_return: JobReturn | BaseException,
    objectives: Sequence[str] = ("val_loss",),
) -> FrozenTrial:
    """COMPLETE with the returned objectives, or FAIL with the reason; a trial already finished is kept."""
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        return frozen
    values, reason = job_result(job_return, objectives)
    try:
        if values is not None:
            study.tell(frozen.number, values=values)
        else:
            fail_trial(study, storage, trial_id, reason or "the job returned no objective values")
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
