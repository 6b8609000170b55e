"""The end of a sweep: optimization_results.yaml, and chosen trials written as experiment configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.export import config_changes, write_experiment
from makemore_sweep.sweeper.ownership import owner_header_line
from makemore_sweep.sweeper.search_space import SearchSpace

RESULTS_FILE = "optimization_results.yaml"
LABELS = {"val_loss": "dev", "test_loss": "test"}  # how an experiment's header names the losses


def save_results(
    config: DictConfig, study: optuna.Study, best: FrozenTrial | None, url: str
) -> Path:
    """optimization_results.yaml in the sweep folder, as the upstream plugin writes it."""
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": mask_secrets(url),
    }
    if best is not None:
        results.update(best_params=dict(best.params), best_value=best.value, best_trial=best.number)
    return _write(config, results)


def save_pareto_results(
    config: DictConfig, study: optuna.Study, front: list[FrozenTrial], url: str
) -> Path:
    """optimization_results.yaml of a multi-objective sweep: its Pareto front as upstream writes it
    (`solutions`: params and values), with each trial's number and the objectives' names."""
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": mask_secrets(url),
        "objectives": list(study.metric_names or []),
        "directions": [d.name.lower() for d in study.directions],
        "solutions": [
            {"trial": t.number, "params": dict(t.params), "values": list(t.values)} for t in front
        ],
    }
    return _write(config, results)


def _write(config: DictConfig, results: dict[str, Any]) -> Path:
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
    return sweep_dir / RESULTS_FILE


def export_experiment(
    config: DictConfig,
    hydra_context: HydraContext,
    study: optuna.Study,
    trial: FrozenTrial,
    space: SearchSpace,
    export_dir: str | None,
    name: str,
    study_label: str,
) -> tuple[Path, str]:
    """Write `trial` as `<export dir>/<name>.yaml`; return its path and experiment name."""
    loader = hydra_context.config_loader
    trial_config = loader.load_sweep_config(config, space.trial_overrides(trial.params))
    default_config = loader.load_configuration(
        config_name=config.hydra.job.config_name, overrides=[], run_mode=RunMode.RUN
    )
    directory = Path(export_dir) if export_dir else experiment_export_dir()
    names = study.metric_names or ["val_loss"]
    figures = [
        f"{LABELS.get(key, key)} {_figure(value)}" for key, value in zip(names, trial.values)
    ]
    if "test_loss" not in names:
        figures.append(f"test {_figure(trial.user_attrs.get('test_loss', float('nan')))}")
    kind = "Pareto-front trial" if len(trial.values) > 1 else "Best trial"
    header = [
        f"{kind} {trial.number} of Optuna study {study.study_name}: {', '.join(figures)}.",
        f"Written by the sweeper; reproduce it with: makemore-train experiment={name}",
        owner_header_line(study_label),
    ]
    changes = config_changes(trial_config, default_config, always=list(trial.params))
    return write_experiment(directory, name, changes, header), name


def _figure(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.4f}"
