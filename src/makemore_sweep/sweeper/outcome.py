"""How a trial ended, and the one tell: PRUNED, COMPLETE or FAIL (issue 25).

Runs in whichever process runs trials (`worker.py`, `packed_worker.py`). A trial's run only
reports its validations to the pruner and writes its state in metrics.json (`trial_hook.py`);
its runner then tells the study here, in `tell_outcome`, the only place that calls
`study.tell`. It owns the user attributes `fail_reason` and the run's figures.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.errors import JobLost, UserError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.claims import OWNER_ATTR, TrialLeases
from makemore_sweep.training.metrics_file import read_metrics

log = logging.getLogger(__name__)

FAIL_REASON_ATTR = "fail_reason"
ENDED_STATES = ("completed", "pruned", "failed")  # metrics.json states of a run that has ended
# Figures of metrics.json copied to the trial's user attributes, for reports and the sweep summary.
OUTCOME_ATTRS = (
    "val_loss",
    "test_loss",
    "train_loss",
    "n_params",
    "steps",
    "train_time_s",
    "state",
    "pruned_at_step",
)


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


def attempt_metrics(run_dir: Path, attempt: str) -> dict[str, Any] | None:
    """The metrics.json a job elsewhere wrote in `run_dir` in attempt `attempt` (its token, see
    trial_hook.py); None when it wrote none, the folder holding an earlier attempt's only."""
    try:
        metrics = read_metrics(run_dir)
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("optuna_attempt") != attempt:
        return None
    return metrics


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


def failures_of_sweep(study: optuna.Study, sweep_id: str) -> list[FrozenTrial]:
    """The FAIL trials run by the processes of one sweep (what max_failure_rate counts)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if (t.user_attrs.get(OWNER_ATTR) or {}).get("sweep_id") == sweep_id
    ]
