"""The sweep process: start a study's sweep, hand its trials to a runner, finish it.

Runs in the process of `makemore-train sweep=NAME` (Hydra calls the plugin class, which calls
`run_sweep`). It owns the sweep from start to end, and never loads the training stack:

    settle everything that could touch another study's records          (below: a study's records)
    open (or create) the study in persistent storage (a journal file for cluster jobs)
                                                                     (storage.py, study.py)
    run it until it holds n_trials finished (COMPLETE + PRUNED) trials      (runners.py), either
        with long-lived workers that each pull trial after trial (worker.py), or
        with one job per trial, in batches of n_jobs
    print the best trial, write optimization_results.yaml and the best trial as an experiment
    (several objectives: the Pareto front, each of its trials as an experiment)  (results.py)

Counting from the storage is what makes a re-run resume and several sweep processes on one
storage share the total; RUNNING trials that nobody runs any more are continued, not redone.

A study owns its records: the settings that define its trials, its sweep folder, its exports.
A study is known by its storage and its name (`study_label`). Two ordinary mistakes used to mix
two studies' records, so both are refused with one sentence before any trial runs:

- **Changed settings.** What defines a trial (the search space, the pruner and its options,
  `trainer.max_steps`, `trainer.val_every_n_steps`, the objectives) is written into the study
  when it is created (its user attribute `sweep_settings`). A later run that changes any of
  them would add trials that do not compare with the others, so it is refused, naming the key.
  `n_trials` may change freely.
- **One study name on two storages.** The sweep folder (`multirun/<study_name>`) holds a file
  naming the study that owns it, and each exported experiment (`configs/experiment/<study>_best`)
  names its study's storage in its header (results.py `check_exports`). A sweep of another
  study that would write there is refused, naming the other study and the key to change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import FrozenTrial

from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.config.sweep_settings import SweepSettings
from makemore_sweep.errors import ConfigError
from makemore_sweep.redaction import mask_secrets, mask_text
from makemore_sweep.sweeper.results import (
    check_exports,
    experiment_name,
    export_experiment,
    exported_names,
    pareto_experiment_name,
    save_pareto_results,
    save_results,
)
from makemore_sweep.sweeper.runners import run_batches, run_workers
from makemore_sweep.sweeper.storage import (
    JOURNAL_PREFIX,
    SQLITE_PREFIX,
    STUDIES_DIR,
    check_sweep_storage_location,
    make_default_folder,
    open_sweep_storage,
    study_storage_url,
)
from makemore_sweep.sweeper.study import (
    SearchSpace,
    build_sampler,
    build_search_space,
    count_states,
    count_trials,
    finished,
    is_grid,
    open_study,
    study_name,
)
from makemore_sweep.sweeper.worker import SweepRun
from makemore_sweep.training.resume_command import SWEEP_RECORD

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


# --- a study's records ---------------------------------------------------------------------------

SETTINGS_ATTR = "sweep_settings"  # the study's user attribute holding what defines its trials
OWNER_FILE = ".optuna-study.yaml"  # in the sweep folder: the study whose trials it holds
TRIAL_FOLDER_PREFIX = "trial_"
# The trainer settings a trial's learning curve depends on, besides the searched parameters.
TRAINER_KEYS = ("trainer.max_steps", "trainer.val_every_n_steps")
NEW_STUDY_HINT = "start a new study with hydra.sweeper.study_name=<new name>"


def study_label(study_name: str, storage_url: str, base_dir: Path) -> str:
    """`'beat_2p2' in sqlite:///studies/beat_2p2.db`: the study's identity as it is written and compared.

    A file under the folder the sweep runs in is named relative to it, so a project folder
    that moves keeps its studies; a password in a server URL is masked.
    """
    return f"{study_name!r} in {_storage_key(storage_url, base_dir)}"


def _storage_key(url: str, base_dir: Path) -> str:
    for prefix in (SQLITE_PREFIX, JOURNAL_PREFIX):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :])
            if path.is_absolute() and path.is_relative_to(base_dir.resolve()):
                return f"{prefix}{path.relative_to(base_dir.resolve())}"
    return mask_secrets(url)


# --- settings -------------------------------------------------------------------------------------


def defining_settings(
    config: DictConfig, settings: SweepSettings, space: SearchSpace
) -> dict[str, Any]:
    """What defines the study's trials, as JSON-ready values keyed by the config key a user changes."""
    pruner = str(settings.pruner).lower()
    options = settings.pruner_options.get(pruner) if settings.pruner_options is not None else None
    # In the order a refusal names them: what users change most often first.
    record: dict[str, Any] = {
        key: OmegaConf.select(config, key, default=None) for key in TRAINER_KEYS
    }
    record.update(
        {
            "hydra.sweeper.objectives": list(settings.objectives),
            "hydra.sweeper.pruner": pruner,
            f"hydra.sweeper.pruner_options.{pruner}": _plain(options) or {},
            "hydra.sweeper.params": {
                name: distribution_to_json(d) for name, d in sorted(space.distributions.items())
            },
        }
    )
    return record


def _plain(node: Any) -> Any:
    """Options as plain JSON values, interpolations (`${trainer.max_steps}`) resolved."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    return node


def keep_study_settings(study: optuna.Study, wanted: dict[str, Any]) -> None:
    """Record `wanted` in a study that has no record yet; refuse a run that differs from the record."""
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:  # a new study, or one made before studies kept their settings
        study.set_user_attr(SETTINGS_ATTR, wanted)
        return
    name = study.study_name
    for key, value in wanted.items():
        if key not in recorded:
            continue  # a setting this study predates
        before = recorded[key]
        if key == "hydra.sweeper.params":
            _compare_search_spaces(name, before, value)
        elif _canonical(before) != _canonical(value):
            raise ConfigError(
                f"{key}={_shown(value)} does not fit study {name!r}, whose trials were run with "
                f"{key}={_shown(before)}; keep that value, or {NEW_STUDY_HINT}."
            )


def _compare_search_spaces(name: str, before: Mapping[str, str], now: Mapping[str, str]) -> None:
    for param in sorted(set(before) | set(now)):
        if param not in now:
            raise ConfigError(
                f"hydra.sweeper.params no longer searches {param}, which study {name!r} searches as "
                f"{hydra_syntax(json_to_distribution(before[param]))}; search it again, or {NEW_STUDY_HINT}."
            )
        shown_now = hydra_syntax(json_to_distribution(now[param]))
        if param not in before:
            raise ConfigError(
                f"hydra.sweeper.params.{param}={shown_now} is not searched by study {name!r}; "
                f"leave it out, or {NEW_STUDY_HINT}."
            )
        if json_to_distribution(before[param]) != json_to_distribution(now[param]):
            raise ConfigError(
                f"hydra.sweeper.params.{param}={shown_now} does not fit study {name!r}, which searches it as "
                f"{hydra_syntax(json_to_distribution(before[param]))}; keep that range, or {NEW_STUDY_HINT}."
            )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return "null" if value is None else str(value)


def hydra_syntax(distribution: BaseDistribution) -> str:
    """A distribution as the sweep syntax that makes it (study.py's table, read backwards)."""
    if isinstance(distribution, CategoricalDistribution):
        return f"choice({', '.join(str(c) for c in distribution.choices)})"
    if isinstance(distribution, IntDistribution):
        if distribution.step != 1:
            text = f"range({distribution.low}, {distribution.high + 1}, step={distribution.step})"
        else:
            text = f"int(interval({distribution.low}, {distribution.high}))"
    elif isinstance(distribution, FloatDistribution):
        if distribution.step is not None:
            text = f"range({distribution.low}, {distribution.high + distribution.step}, step={distribution.step})"
        else:
            text = f"interval({distribution.low}, {distribution.high})"
    else:
        return repr(distribution)
    return f"tag(log, {text})" if getattr(distribution, "log", False) else text


# --- folders --------------------------------------------------------------------------------------


def check_sweep_folder(sweep_dir: Path, label: str) -> None:
    """Refuse when the sweep folder belongs to another study (its owner file names it)."""
    owner = _read_owner(sweep_dir)
    if owner is not None and owner != label:
        raise ConfigError(
            f"{sweep_dir} holds the trials of study {owner}, not of this sweep's study {label}; "
            "give this study another hydra.sweeper.study_name (or another hydra.sweep.dir)."
        )


def claim_sweep_folder(sweep_dir: Path, label: str, study_has_trials: bool) -> None:
    """Write the owner file of the sweep folder, once; refuse trial folders of an unknown study.

    A folder written before studies named themselves there is taken over by a study that has
    trials (it wrote them); a new study must not take over another study's trial folders.
    """
    check_sweep_folder(sweep_dir, label)
    if _read_owner(sweep_dir) is not None:
        return
    if not study_has_trials and any(sweep_dir.glob(f"{TRIAL_FOLDER_PREFIX}*")):
        raise ConfigError(
            f"{sweep_dir} holds trial folders of another study, and study {label} is new; give this study "
            "another hydra.sweeper.study_name, or move that folder away."
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Exclusive creation: of two sweeps that start together, one names the folder, and the
        # other reads that name back (the same study cooperates; another is refused).
        with open(sweep_dir / OWNER_FILE, "x", encoding="utf-8") as handle:
            handle.write(
                f"# The Optuna study whose trials this folder holds (makemore-sweep).\nstudy: {json.dumps(label)}\n"
            )
    except FileExistsError:
        check_sweep_folder(sweep_dir, label)


def _read_owner(sweep_dir: Path) -> str | None:
    try:
        text = (sweep_dir / OWNER_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("study: "):
            return str(json.loads(line[len("study: ") :]))
    return None
