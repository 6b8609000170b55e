"""Which Optuna pruner a sweep uses, built from `hydra.sweeper.pruner` and `pruner_options`.

The sweeper and every trial process build the same pruner: the trial asks it whether to stop
after each validation (`trial_reporting.py`), the sweeper needs it too because some samplers
look at pruner brackets (Hyperband).

Wilcoxon (`optuna.pruners.WilcoxonPruner`) is left out on purpose: it is made for an objective
that is the mean of per-instance scores (k folds, a set of problems), each step one instance, and
pairs a trial's steps with the best trial's. Our steps are points of one learning curve and the
objective is its last point, not the mean of its points: a fast starter would look better than a
slow one that ends lower. `patient` (a median pruner that waits for a plateau) stands in for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from makemore_sweep.errors import ConfigError

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "patient": optuna.pruners.PatientPruner,
    "none": optuna.pruners.NopPruner,
}
# PatientPruner's own options; the rest of `pruner_options.patient` goes to the MedianPruner it wraps.
PATIENT_KEYS = ("patience", "min_delta")


def _patient(**options: Any) -> optuna.pruners.PatientPruner:
    """A median pruner that waits: a trial below the median is stopped only once its dev loss
    has not improved for `patience` validations. One flat mapping (not a nested `wrapped:`)
    keeps the option overridable as `pruner_options.patient.patience=3` from the command line."""
    own = {key: options.pop(key) for key in PATIENT_KEYS if key in options}
    if "patience" not in own:
        raise TypeError(
            "it needs patience (validations without improvement before a trial may be pruned)"
        )
    wrapped = optuna.pruners.MedianPruner(**options)
    # Optuna marks PatientPruner experimental; every trial process builds it, so the warning
    # would fill every trial's log with the same line.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(wrapped, **own)


def build_pruner(
    name: str | None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> optuna.pruners.BasePruner:
    """`name` is a key of PRUNERS; `options[name]` are the Optuna pruner's keyword arguments."""
    key = "none" if name is None else str(name).lower()
    if key not in PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner={name} is invalid: it must be one of {', '.join(PRUNERS)}."
        )
    kwargs = dict((options or {}).get(key) or {})
    build: Callable[..., optuna.pruners.BasePruner] = _patient if key == "patient" else PRUNERS[key]
    try:
        return build(**dict(kwargs))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"hydra.sweeper.pruner_options.{key}={kwargs} is invalid: {error}."
        ) from error
