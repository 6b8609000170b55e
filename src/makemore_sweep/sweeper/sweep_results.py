"""The end of a sweep: optimization_results.yaml, and the best trial written as an experiment config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.export import config_changes, experiment_name, write_experiment
from makemore_sweep.sweeper.search_space import SearchSpace

RESULTS_FILE = "optimization_results.yaml"


def save_results(config: DictConfig, study: optuna.Study, best: FrozenTrial | None, url: str) -> Path:
    """optimization_results.yaml in the sweep folder, as the upstream plugin writes it."""
    results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "storage": mask_secrets(url)}
    if best is not None:
        results.update(best_params=dict(best.params), best_value=best.value, best_trial=best.number)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
    return sweep_dir / RESULTS_FILE


def export_best(
    config: DictConfig,
    hydra_context: HydraContext,
    study: optuna.Study,
    best: FrozenTrial,
    space: SearchSpace,
    export_dir: str | None,
) -> tuple[Path, str]:
    """Write the best trial as `<export dir>/<study>_best.yaml`; return its path and experiment name."""
    loader = hydra_context.config_loader
    trial_config = loader.load_sweep_config(config, space.trial_overrides(best.params))
    default_config = loader.load_configuration(config_name=config.hydra.job.config_name, overrides=[], run_mode=RunMode.RUN)
    name = experiment_name(study.study_name)
    directory = Path(export_dir) if export_dir else experiment_export_dir()
    header = [
        (
            f"Best trial {best.number} of Optuna study {study.study_name}: dev {best.value:.4f}, "
            f"test {best.user_attrs.get('test_loss', float('nan')):.4f}."
        ),
        f"Written by the sweeper; reproduce it with: makemore-train experiment={name}",
    ]
    changes = config_changes(trial_config, default_config, always=list(best.params))
    return write_experiment(directory, name, changes, header), name
