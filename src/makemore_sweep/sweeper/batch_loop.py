"""One job per trial, in batches of `hydra.sweeper.n_jobs` (upstream's way, kept for those who use it).

until the study holds n_trials finished trials:
    take the abandoned trials to continue, then ask for as many new ones as are missing
    (at most n_jobs in all), claim them and keep their heartbeat
    launch them as Hydra jobs with the trial's identity  (the job reports and may prune)
    record each one: COMPLETE with the job's return, FAIL with its error
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.errors import UserError
from makemore_sweep.sweeper.leases import TrialLeases
from makemore_sweep.sweeper.storage import claim_lock
from makemore_sweep.sweeper.sweep_run import SweepRun
from makemore_sweep.sweeper.trial_claims import (
    ClaimedTrial,
    TrialSource,
    identity_overrides,
    resume_overrides,
    trial_run_dir,
)
from makemore_sweep.sweeper.trial_outcome import record_outcome

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
        batch: list[ClaimedTrial] = []
        while len(batch) < settings.n_jobs and (continued := source.take_abandoned()) is not None:
            run.printer.continued(continued.number, continued.continued or "")
            batch.append(continued)
        missing = source.missing()
        batch += [
            source.ask_new() for _ in range(min(settings.n_jobs - len(batch), max(missing, 0)))
        ]
        if not batch:
            if missing <= 0 and not leases.unclaimed_running():
                return
            # An orphan of a sweep killed between ask and claim, or a trial of a process that
            # stopped: wait until it is claimed, or abandoned and ours to continue.
            time.sleep(1.0)
            continue
        returns = _launch(run, launcher, leases, batch, job_idx)
        job_idx += len(batch)
        for claimed, job_return in zip(batch, returns):
            outcome = record_outcome(
                run.study, run.storage, claimed.trial_id, job_return, settings.objectives
            )
            run.printer.trial_finished(outcome, run.study)
            if outcome.state == TrialState.FAIL:
                failed.append(outcome)
        run.check_failure_budget(failed)  # once the whole batch is recorded


def _launch(
    run: SweepRun, launcher: Launcher, leases: TrialLeases, batch: list[ClaimedTrial], job_idx: int
) -> list[JobReturn | BaseException]:
    jobs = [_overrides(run, claimed) for claimed in batch]
    trial_ids = [claimed.trial_id for claimed in batch]
    try:
        with leases.keep_alive(trial_ids):
            returns: list[JobReturn | BaseException] = list(
                launcher.launch(jobs, initial_job_idx=job_idx)
            )
    except Exception as error:  # the launcher itself failed (e.g. a submitit job died)
        if isinstance(error, UserError):  # jobs that cannot start: the sentence says what to change
            _release(leases, trial_ids)
            raise
        log.exception("The launcher failed")
        returns = [error] * len(batch)
    except BaseException:
        # Ctrl-C or SystemExit: the interrupted trials are continued by the next run.
        _release(leases, trial_ids)
        raise
    return returns


def _release(leases: TrialLeases, trial_ids: list[int]) -> None:
    for trial_id in trial_ids:
        leases.release(trial_id)


def _overrides(run: SweepRun, claimed: ClaimedTrial) -> list[str]:
    overrides = [
        *run.space.trial_overrides(claimed.params),
        *identity_overrides(claimed.number, run.study.study_name, run.base_dir),
    ]
    if claimed.continued is not None:
        trial_config = run.hydra_context.config_loader.load_sweep_config(run.config, overrides)
        overrides += resume_overrides(Path(trial_run_dir(trial_config)))
    return overrides
