"""The sweep process: start a study's sweep, run its trials with workers or in batches, finish it.

Runs in the process of `makemore-train sweep=NAME` (Hydra calls the plugin class, which calls
`run_sweep`). It owns the sweep from start to end, and never loads the training stack:

    settle everything that could touch another study's records          (ownership.py)
    open (or create) the study in persistent storage (a journal file for cluster jobs)
                                                                     (storage.py, study.py)
    run it until it holds n_trials finished (COMPLETE + PRUNED) trials, either
        with long-lived workers that each pull trial after trial (worker.py): place them with
        the launcher, watch the study (a line per trial as it ends), replace a worker that dies
        or with one job per trial, in batches of n_jobs                (batches.py run_batches)
    print the best trial, write optimization_results.yaml and the best trial as an experiment
    (several objectives: the Pareto front, each of its trials as an experiment)  (results.py)

Workers are Hydra jobs of the configured launcher whose task is `WorkerLoop`:
- `hydra/launcher=basic` (the default): one worker runs in this process; more run as processes
  on this machine (submitit's local executor, as `hydra/launcher=local`);
- `hydra/launcher=local`: one process per worker, `threads = cores // workers` each;
- `hydra/launcher=slurm`: one SLURM job per worker, `cpus_per_task` threads each.
The workers' own output goes to their job logs.

Counting from the storage is what makes a re-run resume and several sweep processes on one
storage share the total; RUNNING trials that nobody runs any more are continued, not redone.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from makemore_sweep.config.instantiation import build
from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.errors import UserError
from makemore_sweep.redaction import mask_secrets, mask_text
from makemore_sweep.sweeper.batches import run_batches
from makemore_sweep.sweeper.claims import failure_reason
from makemore_sweep.sweeper.ownership import (
    check_exports,
    check_sweep_folder,
    claim_sweep_folder,
    defining_settings,
    keep_study_settings,
    study_label,
)
from makemore_sweep.sweeper.results import (
    StudyWatcher,
    experiment_name,
    export_experiment,
    exported_names,
    pareto_experiment_name,
    save_pareto_results,
    save_results,
)
from makemore_sweep.sweeper.settings import SweepSettings
from makemore_sweep.sweeper.storage import (
    STUDIES_DIR,
    check_sweep_storage_location,
    make_default_folder,
    open_sweep_storage,
    study_storage_url,
)
from makemore_sweep.sweeper.study import (
    build_sampler,
    build_search_space,
    count_states,
    count_trials,
    finished,
    is_grid,
    open_study,
    study_name,
)
from makemore_sweep.sweeper.worker import SweepRun, WorkerLoop
from makemore_sweep.training.resume_command import SWEEP_RECORD

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


# --- start and finish -----------------------------------------------------------------------------


def run_sweep(
    config: DictConfig,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    settings: SweepSettings,
    arguments: list[str],
) -> None:
    settings.check()
    space = build_search_space(settings.params, arguments, settings.custom_search_space)
    name = study_name(settings, config)
    base_dir = Path(str(config.hydra.runtime.cwd))
    sweep_dir = base_dir / str(config.hydra.sweep.dir)
    url = study_storage_url(config.hydra, name, base_dir)
    # Everything that could touch another study's records is settled before any trial runs.
    make_default_folder(url, [base_dir / STUDIES_DIR, sweep_dir])
    check_sweep_storage_location(url)
    label = study_label(name, url, base_dir)
    check_sweep_folder(sweep_dir, label)
    check_exports(
        Path(settings.export_dir) if settings.export_dir else experiment_export_dir(),
        exported_names(name),
        label,
    )
    storage = open_sweep_storage(url)
    n_earlier = count_trials(storage, name)
    claim_sweep_folder(sweep_dir, label, study_has_trials=n_earlier > 0)
    workers = settings.worker_count()
    sampler = build_sampler(
        settings.sampler, seed_offset=n_earlier, parallel=max(workers, settings.n_jobs) > 1
    )
    if is_grid(settings.sampler):
        grid = space.grid()
        sampler = sampler(grid)
        settings = settings.with_n_trials(
            min(settings.n_trials, math.prod(len(v) for v in grid.values()))
        )
    study = open_study(name, storage, sampler, settings)
    keep_study_settings(study, defining_settings(config, settings, space))
    save_sweep_config(config, sweep_dir)  # once nothing more is refused
    if n_earlier == 0:
        for params in settings.enqueue:
            study.enqueue_trial(dict(params), skip_if_exists=True)

    run = SweepRun(
        config, hydra_context, task_function, settings, space, study, storage, url, n_earlier, label
    )
    counts = count_states(study)
    run.printer.plan(study, mask_secrets(url), settings.n_trials, counts)
    if finished(counts) < settings.n_trials:  # else nothing to run: straight to the summary
        if workers > 0:
            run_workers(run, workers)
        else:
            run_batches(run)
    finish(run)


def save_sweep_config(config: DictConfig, sweep_dir: Path) -> None:
    """multirun.yaml, as Hydra's own sweepers write it: the sweep's configuration and command
    line (`hydra.overrides`), from which `resume=` on a trial folder gives the sweep's command."""
    text = mask_text(OmegaConf.to_yaml(config))  # never a password on disk, not even briefly
    (sweep_dir / SWEEP_RECORD).write_text(text, encoding="utf-8")


def finish(run: SweepRun) -> None:
    counts = count_states(run.study)
    if run.settings.multi_objective:
        front = run.printer.pareto_front(run.study, counts)
        save_pareto_results(run.config, run.study, front, run.storage_url)
        for trial in front:
            path, name = export_trial(
                run, trial, pareto_experiment_name(run.study.study_name, trial.number)
            )
            run.printer.say(
                f"[sweep]   trial {trial.number} written as {path}: makemore-train experiment={name}"
            )
        return
    best = run.printer.best(run.study, counts)
    save_results(run.config, run.study, best, run.storage_url)
    if best is not None:
        path, name = export_trial(run, best, experiment_name(run.study.study_name))
        run.printer.say(
            f"[sweep]   written as {path}; reproduce it with: makemore-train experiment={name}"
        )


def export_trial(run: SweepRun, trial: FrozenTrial, name: str) -> tuple[Path, str]:
    return export_experiment(
        run.config,
        run.hydra_context,
        run.study,
        trial,
        run.space,
        run.settings.export_dir,
        name,
        run.label,
    )


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
