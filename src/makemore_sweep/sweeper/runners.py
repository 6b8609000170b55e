"""How the sweep process runs a study's trials: long-lived workers, or one job per trial.

Runs in the sweep process (`driver.py` hands it the open study as a `SweepRun`):

- **workers** (`run_workers`): Hydra jobs of the configured launcher whose task is
  `WorkerLoop` (worker.py), each pulling trial after trial:
  - `hydra/launcher=basic` (the default): one worker runs in this process; more run as
    processes on this machine (submitit's local executor, as `hydra/launcher=local`);
  - `hydra/launcher=local`: one process per worker, `threads = cores // workers` each;
  - `hydra/launcher=slurm`: one SLURM job per worker, `cpus_per_task` threads each.
  The workers' own output goes to their job logs. `WorkerSupervisor` replaces a worker that dies
  while the study still needs trials, and the study watcher prints a line per trial as it ends.
- **one job per trial, in batches of n_jobs** (`run_batches`, `workers=0`): upstream's way, kept
  for those who use it (docs/sweeps.md "One job per trial"). This process takes a batch through
  the same claims as a worker (claims.py `next_batch`, under the claim lock), launches each trial
  as a Hydra job of the launcher (this process, local processes or SLURM jobs), waits for the
  batch and tells each end (claims.py). A job elsewhere finds its trial by its overrides
  (worker.py `identity_overrides`), and its metrics.json carries back the token of its attempt,
  so an earlier attempt's record in the same folder is never read as its.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import RunMode
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.config.instantiation import build
from makemore_sweep.errors import UserError, one_line
from makemore_sweep.sweeper.claims import (
    ClaimedTrial,
    TrialEnd,
    TrialLeases,
    TrialSource,
    failure_reason,
    hand_back,
    tell_outcome,
)
from makemore_sweep.sweeper.results import StudyWatcher
from makemore_sweep.sweeper.storage import claim_lock
from makemore_sweep.sweeper.study import count_states, finished
from makemore_sweep.sweeper.worker import (
    SweepRun,
    WorkerLoop,
    identity_overrides,
    resume_overrides,
    trial_run_dir,
)
from makemore_sweep.training.metrics_file import read_metrics

log = logging.getLogger(__name__)

WORKERS_DIR = ".workers"  # worker_K/ under the sweep folder: each worker's Hydra files and log
STOP_WAIT_S = 30.0  # how long a stopped sweep waits for its launches to stop their jobs
IN_THIS_PROCESS = "in this process"


class SweepInterrupted(UserError):
    exit_code = 130


class WorkersStopped(UserError):
    """The workers ended before the study was complete, for reasons of their own."""


class WorkersDied(UserError):
    """More workers died than `hydra.sweeper.max_worker_restarts` allows to replace."""


# --- workers: place, watch, replace ---------------------------------------------------------------


def run_workers(run: SweepRun, workers: int) -> None:
    task = WorkerLoop(
        hydra_context=run.hydra_context,
        task_function=run.task_function,
        master_config=run.config,
        settings=run.settings,
        space=run.space,
        storage_url=run.storage_url,
        study_name=run.study.study_name,
        sweep_id=run.sweep_id,
        seed_offset=run.n_earlier,
    )
    launcher, where = _launcher(run, task, workers)
    run.printer.say(f"[sweep] {workers} worker{'s' if workers > 1 else ''} {where}")
    watcher = StudyWatcher(run.study, run.sweep_id, run.printer)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch, args=(stop,), name="sweep-watcher", daemon=True)
    thread.start()
    reasons: list[
        tuple[int, str]
    ] = []  # replaced workers say nothing; WorkersDied speaks for the rest
    try:
        if where == IN_THIS_PROCESS:  # nothing to replace: a worker that dies takes the sweep along
            reasons = _reasons(enumerate(launcher.launch([_worker_job(run, 0)], initial_job_idx=0)))
        else:
            WorkerSupervisor(run, launcher, watcher).supervise(workers)
    except KeyboardInterrupt:
        raise SweepInterrupted(
            "The sweep was interrupted; run the same command again to continue its unfinished trials from their checkpoints."
        ) from None
    finally:
        stop.set()
        thread.join()
    _report_workers(run, reasons)


def _worker_job(run: SweepRun, index: int) -> list[str]:
    """A worker's job is composed like a trial's, the sweep's fixed overrides included, in a folder of its own."""
    return [*run.space.trial_overrides({}), f"hydra.sweep.subdir={WORKERS_DIR}/worker_{index}"]


class WorkerSupervisor:
    """Starts the workers, each as a launch of its own, and replaces one that dies.

    A worker dies when its process or job ends without its summary: SIGKILL, the OOM killer, a
    lost node, a failed SLURM job. While the study still needs trials and
    `hydra.sweeper.max_worker_restarts` allows, a new worker (the next index) takes its place;
    its unfinished trial is abandoned (its process is gone) and the next free worker continues it
    from its checkpoint. A worker that returns its summary has found the study complete.
    """

    def __init__(self, run: SweepRun, launcher: Launcher, watcher: StudyWatcher) -> None:
        self.run = run
        self.launcher = launcher
        self.watcher = watcher  # knows which trial each worker was running, as it last looked
        self.ended: queue.Queue[tuple[int, JobReturn | BaseException]] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.workers = 0

    def supervise(self, workers: int) -> None:
        """Supervise until every worker has ended; WorkersDied when some died unreplaced and
        the study still needs trials."""
        self.workers = workers
        budget = self.run.settings.max_worker_restarts
        running, next_index, restarts = 0, workers, 0
        unreplaced: list[tuple[int, str]] = []
        try:
            for index in range(workers):
                self._start(index)
                running += 1
            while running:
                index, outcome = self._next_ended()
                running -= 1
                reason = worker_death(outcome)
                if reason is None:
                    continue
                if self._study_done():
                    self.run.printer.say(
                        f"[sweep] worker {index} died ({reason}); not replaced: the study has its trials"
                    )
                    continue
                held = self._held_trial(index)
                if restarts >= budget:
                    self.run.printer.say(f"[sweep] worker {index} died ({reason}){held}")
                    unreplaced.append((index, reason))
                    continue
                restarts += 1
                self.run.printer.say(
                    f"[sweep] worker {index} died ({reason}); worker {next_index} started{held}"
                )
                self._start(next_index)
                next_index, running = next_index + 1, running + 1
        except BaseException:
            stop_launches(self.launcher)
            for thread in self.threads:
                thread.join(timeout=STOP_WAIT_S)
            raise
        if unreplaced and not self._study_done():
            raise WorkersDied(
                f"{len(unreplaced)} worker(s) died with no replacement left "
                f"(hydra.sweeper.max_worker_restarts={budget} spent); the first: {unreplaced[0][1]}; "
                "run the same command again to continue the study."
            )

    def _start(self, index: int) -> None:
        job = [_worker_job(self.run, index)]
        start, wait_for = (
            getattr(self.launcher, "start", None),
            getattr(self.launcher, "wait", None),
        )
        try:
            if callable(start) and callable(wait_for):
                # This project's submitit launchers (cluster/submitit_jobs.py) submit here, in the
                # main thread, where the local one may set signals around it; only the waiting
                # happens in a thread. Their workers share the cores as one batch would.
                if hasattr(self.launcher, "parallel_jobs"):
                    self.launcher.parallel_jobs = self.workers
                wait = functools.partial(wait_for, start(job, initial_job_idx=index))
            else:
                wait = functools.partial(self.launcher.launch, job, initial_job_idx=index)
        except UserError:
            raise  # jobs that can never start (SLURM): the sentence says what to change
        except Exception as error:  # noqa: BLE001 - a passing submission failure: one more death
            self.ended.put((index, error))
            return

        def wait_for_it() -> None:
            try:
                returned: JobReturn | BaseException = next(iter(wait()))
            except BaseException as error:  # noqa: BLE001 - the launch itself failed: this worker is dead
                returned = error
            self.ended.put((index, returned))

        thread = threading.Thread(target=wait_for_it, name=f"sweep-worker-{index}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _next_ended(self) -> tuple[int, JobReturn | BaseException]:
        while True:  # a timeout, so that Ctrl-C reaches this thread while it waits
            try:
                return self.ended.get(timeout=0.5)
            except queue.Empty:
                continue

    def _study_done(self) -> bool:
        return study_is_complete(self.run)

    def _held_trial(self, index: int) -> str:
        """`; trial 5 continues from step 1750`: the trial the dead worker was running, if any."""
        held = self.watcher.held.get(index)
        if held is None:
            return ""
        number, step = held
        return f"; trial {number} continues" + (f" from step {step}" if step else "")


def worker_death(outcome: JobReturn | BaseException) -> str | None:
    """Why a worker's job ended without its summary; None when it returned the summary."""
    if _returned_summary(outcome):
        return None
    return failure_reason(outcome) or "it ended without its summary"


def stop_launches(launcher: Launcher) -> None:
    """Ask the launcher's waiting launches to stop their jobs (Ctrl-C, or an error here)."""
    stop = getattr(launcher, "stop_requested", None)
    if isinstance(stop, threading.Event):
        stop.set()


def _local_processes(run: SweepRun, task: WorkerLoop) -> Launcher:
    """The `hydra/launcher=local` launcher, composed from its config and set up for this sweep.

    Only the launcher node is taken from that composition: the jobs are still composed from the
    sweep's own config, whose launcher choice Hydra does not let a job change.
    """
    given = [
        *run.config.hydra.overrides.hydra,
        *run.config.hydra.overrides.task,
    ]  # as the sweep was composed
    local = run.hydra_context.config_loader.load_configuration(
        config_name=str(run.config.hydra.job.config_name),
        overrides=[*map(str, given), "hydra/launcher=local"],
        run_mode=RunMode.MULTIRUN,
    )
    OmegaConf.copy_cache(
        from_config=run.config, to_config=local
    )  # the same ${now:...} as the sweep
    launcher: Launcher = build(
        OmegaConf.create(OmegaConf.to_container(local.hydra.launcher, resolve=True))
    )
    launcher.setup(hydra_context=run.hydra_context, task_function=task, config=run.config)
    return launcher


def _launcher(run: SweepRun, task: WorkerLoop, workers: int) -> tuple[Launcher, str]:
    choice = run.config.hydra.runtime.choices.get("hydra/launcher")
    if choice == "basic" and workers > 1:
        # Hydra's basic launcher runs jobs one after the other: workers need processes of their
        # own, placed as the shipped `hydra/launcher=local` config places them.
        return _local_processes(run, task), "as processes on this machine"
    launcher = Plugins.instance().instantiate_launcher(
        config=run.config, hydra_context=run.hydra_context, task_function=task
    )
    where = {
        "basic": IN_THIS_PROCESS,
        "local": "as processes on this machine",
        "slurm": "as SLURM jobs",
    }
    return launcher, where.get(str(choice), f"through hydra/launcher={choice}")


def _reasons(returns: Iterable[tuple[int, JobReturn | BaseException]]) -> list[tuple[int, str]]:
    found = []
    for index, outcome in returns:
        reason = worker_death(outcome)
        if reason is not None:
            found.append((index, reason))
    return found


def study_is_complete(run: SweepRun) -> bool:
    return finished(count_states(run.study)) >= run.settings.n_trials


def _report_workers(run: SweepRun, reasons: list[tuple[int, str]]) -> None:
    for index, reason in reasons:
        run.printer.say(f"[sweep] worker {index} stopped: {reason}")
    run.check_failure_budget(run.failures_of_this_sweep())
    if reasons and not study_is_complete(run):
        raise WorkersStopped(
            f"Every worker stopped before the study had n_trials={run.settings.n_trials} finished trials; "
            f"the first said: {reasons[0][1]}"
        )


def _returned_summary(outcome: JobReturn | BaseException) -> bool:
    if isinstance(outcome, BaseException) or outcome.status != JobStatus.COMPLETED:
        return False
    return isinstance(outcome.return_value, dict)


# --- one job per trial, in batches ---------------------------------------------------------------


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
