"""One sweep of a study, start to end.

    open (or create) the study in persistent storage (a journal file for cluster jobs)
    run it until it holds n_trials finished (COMPLETE + PRUNED) trials, either
        with long-lived workers that each pull trial after trial   (worker_pool.py, worker_loop.py)
        or with one job per trial, in batches of n_jobs            (batch_loop.py)
    print the best trial, write optimization_results.yaml and the best trial as an experiment
    (several objectives: the Pareto front, each of its trials as an experiment)

Counting from the storage is what makes a re-run resume and several sweep processes on one
storage share the total; RUNNING trials that nobody runs any more are continued, not redone.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.errors import ConfigError, StorageError
from makemore_sweep.redaction import mask_secrets, mask_text
from makemore_sweep.sweeper.batch_loop import run_batches
from makemore_sweep.sweeper.export import experiment_name, exported_names, pareto_experiment_name
from makemore_sweep.sweeper.ownership import (
    check_exports,
    check_sweep_folder,
    claim_sweep_folder,
    defining_settings,
    keep_study_settings,
    study_label,
)
from makemore_sweep.sweeper.progress_printer import count_states, finished
from makemore_sweep.sweeper.pruners import build_pruner
from makemore_sweep.sweeper.search_space import build_search_space
from makemore_sweep.sweeper.settings import (
    SweepSettings,
    build_sampler,
    directions,
    is_grid,
    study_name,
)
from makemore_sweep.sweeper.storage import (
    STUDIES_DIR,
    check_sweep_storage_location,
    make_default_folder,
    open_sweep_storage,
)
from makemore_sweep.sweeper.study_location import study_storage_url
from makemore_sweep.sweeper.sweep_results import (
    export_experiment,
    save_pareto_results,
    save_results,
)
from makemore_sweep.sweeper.sweep_run import SweepRun
from makemore_sweep.sweeper.worker_pool import run_workers
from makemore_sweep.training.resume_command import SWEEP_RECORD


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


def open_study(
    name: str, storage: BaseStorage, sampler: optuna.samplers.BaseSampler, settings: SweepSettings
) -> optuna.Study:
    """Create the study, or load it when it exists with the same objectives and directions."""
    wanted = directions(settings.direction)
    # Optuna's "A new study created" / "Using an existing study" says less than the plan line
    # printed next, and would stand on stderr beside a refusal's one sentence.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=build_pruner(settings.pruner, settings.pruner_options),
            directions=wanted,  # type: ignore[arg-type]
            load_if_exists=True,
        )
    except ValueError as error:
        raise ConfigError(
            f"hydra.sweeper.direction does not fit study {name!r}: {error}."
        ) from error
    finally:
        optuna.logging.set_verbosity(verbosity)
    if [d.name.lower() for d in study.directions] != [d.lower() for d in wanted]:
        raise ConfigError(
            f"hydra.sweeper.direction=[{','.join(wanted)}] does not fit study {name!r}, which was created with "
            f"[{','.join(d.name.lower() for d in study.directions)}]; keep its directions or choose another study_name."
        )
    known = study.metric_names
    if known is None:
        with (
            warnings.catch_warnings()
        ):  # set_metric_names is marked experimental; the report reads the names
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(settings.objectives))
    elif tuple(known) != settings.objectives:
        raise ConfigError(
            f"hydra.sweeper.objectives=[{','.join(settings.objectives)}] does not fit study {name!r}, which optimises "
            f"[{','.join(known)}]; keep its objectives or choose another study_name."
        )
    return study


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


def count_trials(storage: BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    except Exception as error:
        raise StorageError(
            f"Cannot read study {name!r} from the Optuna storage: {error}."
        ) from error
    return len(storage.get_all_trials(study_id, deepcopy=False))
