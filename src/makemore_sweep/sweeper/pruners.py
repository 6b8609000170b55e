"""Which Optuna pruner a sweep uses, built from `hydra.sweeper.pruner` and `pruner_options`.

The sweeper and every trial process build the same pruner: the trial asks it whether to stop
after each validation (`trial_reporting.py`), the sweeper needs it too because some samplers
look at pruner brackets (Hyperband).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from makemore_sweep.errors import ConfigError

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "none": optuna.pruners.NopPruner,
}


def build_pruner(name: str | None, options: Mapping[str, Mapping[str, Any]] | None = None) -> optuna.pruners.BasePruner:
    """`name` is a key of PRUNERS; `options[name]` are the Optuna pruner's keyword arguments."""
    key = "none" if name is None else str(name).lower()
    if key not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner={name} is invalid: it must be one of {', '.join(PRUNERS)}.")
    kwargs = dict((options or {}).get(key) or {})
    try:
        return PRUNERS[key](**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"hydra.sweeper.pruner_options.{key}={kwargs} is invalid: {error}.") from error
