"""A sweep's chosen trials as experiment configs: `makemore-train experiment=<study>_best`
(or `<study>_pareto_<trial>` for each trial on a multi-objective study's Pareto front).

The experiment holds every value in which the best trial's configuration differs from the
default one (conf/train.yaml alone): the searched parameters, the sweep file's settings such as
the step budget, and the fixed command-line overrides. Interpolations are kept unresolved,
so run folders and the like still follow the new run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Set per trial by the sweeper or per run by Hydra: not part of what the trial trained.
NOT_EXPORTED = ("hydra", "optuna_trial")
_MISSING = object()


def experiment_name(study_name: str) -> str:
    return _safe(f"{study_name}_best")


def pareto_experiment_name(study_name: str, trial_number: int) -> str:
    """The experiment of one trial on a multi-objective study's Pareto front."""
    return _safe(f"{study_name}_pareto_{trial_number}")


def exported_names(study_name: str) -> list[str]:
    """Glob patterns of every experiment a sweep of this study may write (best and Pareto front)."""
    return [experiment_name(study_name), f"{_safe(f'{study_name}_pareto_')}*"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def config_changes(
    config: DictConfig, baseline: DictConfig, always: Sequence[str] = ()
) -> dict[str, Any]:
    """The values of `config` that `baseline` does not have, as a nested dict.

    `always` lists dotted keys (the searched parameters) written even when they equal the
    baseline, so the experiment reads as the sweep's answer; config-group choices among them
    (`model=mlp`) are left to the diff of the values they select.
    """
    ours = OmegaConf.to_container(config, resolve=False)
    theirs = OmegaConf.to_container(baseline, resolve=False)
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    for key in NOT_EXPORTED:
        ours.pop(key, None)
    changes = _diff(ours, theirs)
    for dotted in always:
        key = dotted.lstrip("+~")
        value = OmegaConf.select(config, key, default=_MISSING, throw_on_resolution_failure=False)
        if value is _MISSING or OmegaConf.is_config(value):
            continue
        node = changes
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return changes


def _diff(ours: dict[Any, Any], theirs: dict[Any, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in ours.items():
        other = theirs.get(key, _MISSING)
        if isinstance(value, dict) and isinstance(other, dict):
            nested = _diff(value, other)
            if nested:
                changes[key] = nested
        elif value != other:
            changes[key] = value
    return changes


def write_experiment(
    directory: Path, name: str, changes: dict[str, Any], header: list[str]
) -> Path:
    """Write `<directory>/<name>.yaml` as a global-package experiment; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    comments = "".join(f"# {line}\n" for line in header)
    body = OmegaConf.to_yaml(OmegaConf.create(changes)) if changes else "{}\n"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(f"# @package _global_\n{comments}{body}")
    tmp.replace(path)
    return path
