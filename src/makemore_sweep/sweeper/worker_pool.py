"""The sweep process's side of long-lived workers: place them with the launcher, watch the study.

Workers are Hydra jobs of the configured launcher whose task is `WorkerLoop`:
- `hydra/launcher=basic` (the default): one worker runs in this process; more run as processes
  on this machine (submitit's local executor, as `hydra/launcher=local`);
- `hydra/launcher=local`: one process per worker, `threads = cores // workers` each;
- `hydra/launcher=slurm`: one SLURM job per worker, `cpus_per_task` threads each.

While they run, a thread of this process watches the study and prints each trial's line as
it ends (and when a trial is continued). The workers' own output goes to their job logs.
"""

from __future__ import annotations

import logging
import threading

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import RunMode
from omegaconf import OmegaConf
from optuna.trial import TrialState

from makemore_sweep.config.instantiation import build
from makemore_sweep.errors import UserError
from makemore_sweep.sweeper.study_run import SweepRun
from makemore_sweep.sweeper.trial_claims import CONTINUED_ATTR, CONTINUED_REASON_ATTR
from makemore_sweep.sweeper.trial_outcome import failure_reason
from makemore_sweep.sweeper.worker_loop import WorkerLoop

log = logging.getLogger(__name__)

WORKERS_DIR = ".workers"  # worker_K/ under the sweep folder: each worker's Hydra files and log
WATCH_S = 1.0


class SweepInterrupted(UserError):
    exit_code = 130


class WorkersStopped(UserError):
    """The workers ended before the study was complete, for reasons of their own."""


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
    # A worker's job is composed like a trial's, the sweep's fixed overrides included, in a folder of its own.
    jobs = [
        [*run.space.trial_overrides({}), f"hydra.sweep.subdir={WORKERS_DIR}/worker_{i}"]
        for i in range(workers)
    ]
    watcher = StudyWatcher(run)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch, args=(stop,), name="sweep-watcher", daemon=True)
    thread.start()
    try:
        returns = list(launcher.launch(jobs, initial_job_idx=0))
    except KeyboardInterrupt:
        raise SweepInterrupted(
            "The sweep was interrupted; run the same command again to continue its unfinished trials from their checkpoints."
        ) from None
    finally:
        stop.set()
        thread.join()
    _report_workers(run, returns)


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
        "basic": "in this process",
        "local": "as processes on this machine",
        "slurm": "as SLURM jobs",
    }
    return launcher, where.get(str(choice), f"through hydra/launcher={choice}")


def _report_workers(run: SweepRun, returns: list[JobReturn]) -> None:
    reasons = []
    for index, job_return in enumerate(returns):
        reason = failure_reason(job_return) if not _returned_summary(job_return) else None
        if reason is not None:
            reasons.append(reason)
            run.printer.say(f"[sweep] worker {index} stopped: {reason}")
    run.check_failure_budget(run.failures_of_this_sweep())
    counts = {s: 0 for s in TrialState}
    for trial in run.study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    if counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] < run.settings.n_trials and reasons:
        raise WorkersStopped(
            f"Every worker stopped before the study had n_trials={run.settings.n_trials} finished trials; "
            f"the first said: {reasons[0]}"
        )


def _returned_summary(job_return: JobReturn) -> bool:
    try:
        return isinstance(job_return.return_value, dict)
    except BaseException:  # noqa: BLE001 - the worker's own error: failure_reason says it
        return False


class StudyWatcher:
    """Prints a line for each trial that ends (or is continued) while the workers run."""

    def __init__(self, run: SweepRun) -> None:
        self.run = run
        trials = run.study.get_trials(deepcopy=False)
        self.printed = {t.number for t in trials if t.state.is_finished()}
        self.continued = {t.number: int(t.user_attrs.get(CONTINUED_ATTR, 0)) for t in trials}

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(WATCH_S):
            self._poll_safely()
        self._poll_safely()  # what ended since the last look

    def _poll_safely(self) -> None:
        try:
            self.poll()
        except Exception as error:  # noqa: BLE001 - a busy storage: the next look will do
            log.debug("Watching the study failed: %s", error)

    def poll(self) -> None:
        for trial in self.run.study.get_trials(deepcopy=False):
            times = int(trial.user_attrs.get(CONTINUED_ATTR, 0))
            if times > self.continued.get(trial.number, 0):
                self.continued[trial.number] = times
                self.run.printer.continued(
                    trial.number, str(trial.user_attrs.get(CONTINUED_REASON_ATTR, ""))
                )
            if trial.state.is_finished() and trial.number not in self.printed:
                self.printed.add(trial.number)
                self.run.printer.trial_finished(trial, self.run.study)
