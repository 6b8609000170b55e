"""The sweep process as its own runner: one job per trial, in batches of n_jobs (`workers=0`).

Upstream's way, kept for those who use it (docs/sweeps.md "One job per trial"): the sweep
process takes a batch through the same claims as a worker (claims.py `next_batch`, under the
claim lock), launches each trial as a Hydra job of the launcher (this process, local processes
or SLURM jobs), waits for the batch and tells each end (claims.py). A job elsewhere finds its
trial by its overrides (worker.py `identity_overrides`), and its metrics.json carries back the
token of its attempt, so an earlier attempt's record in the same folder is never read as its.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.errors import UserError, one_line
from makemore_sweep.sweeper.claims import (
    ClaimedTrial,
    TrialEnd,
    TrialLeases,
    TrialSource,
    hand_back,
    tell_outcome,
)
from makemore_sweep.sweeper.storage import claim_lock
from makemore_sweep.sweeper.worker import (
    SweepRun,
    identity_overrides,
    resume_overrides,
    trial_run_dir,
)
from makemore_sweep.training.metrics_file import read_metrics

log = logging.getLogger(__name__)


def run_batches(run: SweepRun) -> None:
    settings = run.settings
    launcher = Plugins.instance().instantiate_launcher(
        config=run.config, hydra_context=run.hydra_context, task_function=run.task_function
    )
    leases = TrialLeases(
        run.study,
        run.storage,
        settings.heartbeat_interval,
        settings.grace_period,
        sweep_id=run.sweep_id,
    )
    lock = functools.partial(claim_lock, run.storage_url, run.storage, run.study.study_name)
    source = TrialSource(
        run.study, run.storage, leases, run.space, run.config, settings.n_trials, lock
    )
    failed: list[FrozenTrial] = []
    job_idx = 0
    while True:
        batch = source.next_batch(settings.n_jobs)
        for claimed in batch:
            if claimed.continued_because is not None:
                run.printer.continued(claimed.number, claimed.continued_because)
        if not batch:
            if source.missing() <= 0 and not leases.unclaimed_running():
                return
            # An orphan of a sweep killed between ask and claim, or a trial of a process that
            # stopped: wait until it is claimed, or abandoned and ours to continue.
            time.sleep(1.0)
            continue
        launched, told = [], []
        for claimed in batch:
            try:
                launched.append(LaunchedTrial.of(run, claimed))
            except Exception as error:  # noqa: BLE001 - a trial whose configuration does not compose fails alone
                end = TrialEnd(failure=one_line(error))
                told.append(tell_outcome(run.study, run.storage, claimed.trial_id, end))
        returns = _launch(run, launcher, leases, launched, job_idx) if launched else []
        job_idx += len(launched)
        for trial, job_return in zip(launched, returns):
            written = trial.metrics()
            if (written or {}).get("state") == "interrupted":  # stopped in good order (SLURM)
                hand_back(run.study, leases, trial.claimed.trial_id, written, trial.run_dir)
                continue
            end = TrialEnd.of_job(job_return, written, trial.run_dir)
            told.append(
                tell_outcome(
                    run.study, run.storage, trial.claimed.trial_id, end, settings.objectives
                )
            )
        for outcome in told:
            run.printer.trial_finished(outcome, run.study)
            if outcome.state == TrialState.FAIL:
                failed.append(outcome)
        run.check_failure_budget(failed)  # once the whole batch is recorded


@dataclass(frozen=True)
class LaunchedTrial:
    """A claimed trial as a job of the launcher: its overrides, folder and attempt token."""

    claimed: ClaimedTrial
    overrides: list[str]
    run_dir: Path
    attempt: str  # carried back in its metrics.json: this attempt's record, not an earlier one's

    @classmethod
    def of(cls, run: SweepRun, claimed: ClaimedTrial) -> LaunchedTrial:
        attempt = uuid.uuid4().hex
        overrides = [
            *run.space.trial_overrides(claimed.params),
            *identity_overrides(claimed.number, run.study.study_name, run.base_dir, attempt),
        ]
        run_dir = trial_run_dir(
            run.hydra_context.config_loader.load_sweep_config(run.config, overrides)
        )
        if claimed.continued_because is not None:
            overrides += resume_overrides(run_dir)
        return cls(claimed, overrides, run_dir, attempt)

    def metrics(self) -> dict[str, Any] | None:
        return attempt_metrics(self.run_dir, self.attempt)


def _launch(
    run: SweepRun,
    launcher: Launcher,
    leases: TrialLeases,
    batch: list[LaunchedTrial],
    job_idx: int,
) -> list[JobReturn | BaseException]:
    trial_ids = [trial.claimed.trial_id for trial in batch]
    try:
        with leases.keep_alive(trial_ids):
            returns: list[JobReturn | BaseException] = list(
                launcher.launch([trial.overrides for trial in batch], initial_job_idx=job_idx)
            )
    except Exception as error:  # the launcher itself failed (e.g. a submitit job died)
        if isinstance(error, UserError):  # jobs that cannot start: the sentence says what to change
            for trial_id in trial_ids:
                leases.release(trial_id)
            raise
        log.exception("The launcher failed")
        returns = [error] * len(batch)
    except BaseException:
        # Ctrl-C or SystemExit: pruned trials are finished; the others are continued by the next run.
        for trial in batch:
            trial_id, objectives = trial.claimed.trial_id, run.settings.objectives
            hand_back(run.study, leases, trial_id, trial.metrics(), trial.run_dir, objectives)
        raise
    return returns


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
