"""Pruning: which Optuna pruner a sweep uses, and the callback that lets a trial be stopped early.

The sweeper and every trial process build the same pruner from `hydra.sweeper.pruner` and
`hydra.sweeper.pruner_options`: the trial asks it whether to stop after each validation, the
sweeper needs it too because some samplers look at pruner brackets (Hyperband).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import optuna
from optuna.exceptions import UpdateFinishedTrialError

from makemore_sweep.errors import ConfigError

log = logging.getLogger(__name__)

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


class OptunaPruning(L.Callback):
    """Reports the dev loss to the trial after each validation; stops training when pruned.

    The step reported is the optimiser step, so trials with the same validation interval
    are compared at the same points. The last validation is only reported: a trial that has
    finished its budget is kept as COMPLETE rather than pruned.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss") -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at_step: int | None = None
        self.last_value: float | None = None
        self._detached = False

    @property
    def pruned(self) -> bool:
        return self.pruned_at_step is not None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._detached or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        step = trainer.global_step
        self.last_value = value
        try:
            self.trial.report(value, step)
        except UpdateFinishedTrialError:
            # Another sweep process failed this trial as abandoned; finish the run, report nothing.
            log.warning("Optuna trial %d is no longer running; pruning is off for this run.", self.trial.number)
            self._detached = True
            return
        if step < trainer.max_steps and self.trial.should_prune():
            self.pruned_at_step = step
            trainer.should_stop = True
            log.info("Trial %d pruned at step %d (dev loss %.4f).", self.trial.number, step, value)
