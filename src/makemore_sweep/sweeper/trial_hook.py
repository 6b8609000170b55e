"""The trial hook: a training run's side of an Optuna sweep (report, prune; it tells nothing).

Runs inside a trial's run. The entry point hands the run a `TrialReporter` (a `RunHook`): it
reports the dev loss at every validation and stops the run when the pruner says so; the run
then ends with the state `pruned` in its metrics.json, and its runner tells the study
(claims.py `tell_outcome`, the one tell).

Where the reporter comes from:
- in a worker, the worker builds it with its own study, pruner and trial, and hands it over as
  an object while the trial's job runs in the worker's process (`handed_to_run`); the run's
  metrics.json comes back the same way (`written`), so the worker tells this attempt's outcome;
- a job that runs elsewhere (one job per trial, `hydra.sweeper.workers=0`) finds its trial by
  the overrides `+optuna_trial.number=N +optuna_trial.study_name=NAME +optuna_trial.base_dir=DIR
  +optuna_trial.attempt=TOKEN` and opens the study itself (`_trial_study`: once per process);
  its metrics.json carries the attempt's token (`optuna_attempt`), by which the sweep process
  tells it from an earlier attempt's record in the same folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import UpdateFinishedTrialError

from makemore_sweep.config.sweep_settings import DEV_LOSS, TRIAL_CONFIG_KEY, objective_list
from makemore_sweep.errors import ConfigError, StorageError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.storage import shared_sweep_storage, study_storage_url
from makemore_sweep.sweeper.study import build_pruner
from makemore_sweep.training.resume_command import SweepTrial, continue_trial_advice, sweep_trial_of
from makemore_sweep.training.run_hooks import RunHook

log = logging.getLogger(__name__)

_STUDIES: dict[tuple[str, str, str], optuna.Study] = {}


def _trial_study(url: str, name: str, pruner: Any, pruner_options: Any) -> optuna.Study:
    """The study as a run sees it, loaded once per process for a storage, name and pruner: a
    worker runs many trials, and each would otherwise build the pruner and load the study again.

    The pruner keeps nothing of one trial that changes its answer for the next (Optuna's own
    `study.optimize` asks one pruner for every trial), so sharing it prunes as before.
    """
    chosen = (pruner_options or {}).get("none" if pruner is None else str(pruner).lower())
    if OmegaConf.is_config(chosen):
        chosen = OmegaConf.to_container(chosen, resolve=True)
    key = (url, name, json.dumps([str(pruner), chosen], sort_keys=True, default=str))
    if key not in _STUDIES:
        built = build_pruner(pruner, pruner_options)
        # The trial never samples, so a RandomSampler keeps opening it cheap.
        _STUDIES[key] = optuna.load_study(
            study_name=name,
            storage=shared_sweep_storage(url),
            sampler=optuna.samplers.RandomSampler(),
            pruner=built,
        )
    return _STUDIES[key]


_HANDED: ContextVar[TrialReporter | None] = ContextVar("handed_trial", default=None)


@contextmanager
def handed_to_run(reporter: TrialReporter) -> Iterator[None]:
    """While the block runs, a run of this trial in this process takes `reporter` as it is."""
    token = _HANDED.set(reporter)
    try:
        yield
    finally:
        _HANDED.reset(token)


class TrialReporter(RunHook):
    """Reports the dev loss to the trial after each validation; stops training when pruned.

    The step reported is the optimiser step, so trials with the same validation interval
    are compared at the same points. The last validation is only reported: a trial that has
    finished its budget is kept as COMPLETE rather than pruned.
    """

    def __init__(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        monitor: str = "val_loss",
        objectives: tuple[str, ...] = (DEV_LOSS,),
        attempt: str | None = None,
    ) -> None:
        self.study = study
        self.trial = trial
        self.monitor = monitor
        self.objectives = objectives
        self.attempt = attempt  # a job elsewhere: the token its metrics.json carries back
        self.pruned_at_step: int | None = None
        self.written: dict[str, Any] | None = None  # this attempt's metrics.json, once written
        self._detached = False

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def study_name(self) -> str:
        return self.study.study_name

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrialReporter | None:
        """The trial this run belongs to, or None when the run is not part of an Optuna sweep."""
        identity = cfg.get(TRIAL_CONFIG_KEY)
        if identity is None:
            return None
        handed = _HANDED.get()
        if handed is not None and handed.number == int(identity.number):
            return handed  # a worker's trial, with the worker's own study and pruner
        sweeper = HydraConfig.get().sweeper
        if "pruner" not in sweeper:
            raise ConfigError(
                f"{TRIAL_CONFIG_KEY} is set but hydra/sweeper is not makemore_optuna; run sweeps with sweep=NAME."
            )
        name, number = str(identity.study_name), int(identity.number)
        url = study_storage_url(HydraConfig.get(), name, Path(identity.base_dir))
        try:
            study = _trial_study(url, name, sweeper.pruner, sweeper.pruner_options)
            storage = shared_sweep_storage(url)
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(name), number
            )
        except KeyError as error:
            raise StorageError(
                f"Optuna study {name!r} has no trial {number} in {mask_secrets(url)}."
            ) from error
        objectives = objective_list(sweeper.get("objectives"))
        return cls(
            study=study,
            trial=optuna.trial.Trial(study, trial_id),
            objectives=objectives,
            attempt=identity.get("attempt"),
        )

    # -- during the run -----------------------------------------------------------------
    def configure(self, cfg: DictConfig) -> None:
        """W&B: one group per study, so a sweep's runs are compared together."""
        wandb_cfg = (cfg.get("logger") or {}).get("wandb")
        if wandb_cfg is not None and wandb_cfg.get("group") is None:
            wandb_cfg.group = self.study_name

    @property
    def stopped_early(self) -> bool:
        return self.pruned_at_step is not None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.validated(
            trainer.global_step, float(trainer.callback_metrics[self.monitor]), trainer.max_steps
        )
        if self.stopped_early:
            trainer.should_stop = True

    def validated(self, step: int, value: float, max_steps: int) -> None:
        """Report the dev loss at `step`; the pruner may stop the run (never at its last step)."""
        if self._detached:
            return
        if len(self.study.directions) > 1:
            return  # Optuna takes no intermediate values from a multi-objective trial
        try:
            self.trial.report(value, step)
        except UpdateFinishedTrialError:
            # Another sweep process failed this trial as abandoned; finish the run, report nothing.
            log.warning(
                "Optuna trial %d is no longer running; pruning is off for this run.",
                self.trial.number,
            )
            self._detached = True
            return
        if step < max_steps and self.trial.should_prune():
            self.pruned_at_step = step
            log.info("Trial %d pruned at step %d (dev loss %.4f).", self.trial.number, step, value)

    # -- after the run ------------------------------------------------------------------
    def continue_advice(self, run_dir: Path) -> str | None:
        """A trial is continued by its sweep: `resume=` would replay it as a sweep of another study."""
        trial = sweep_trial_of(run_dir) or SweepTrial(self.number, self.study_name, None)
        return f"it is trial {self.number} of Optuna study {self.study_name}, and {continue_trial_advice(run_dir, trial)}"

    def returned_values(self, metrics: dict[str, Any]) -> float | list[float | None]:
        """What the trial's job returns to the sweeper: the dev loss, or each objective's value."""
        if self.objectives == (DEV_LOSS,):
            return float(metrics[DEV_LOSS])
        return [
            None if metrics.get(key) is None else float(metrics[key]) for key in self.objectives
        ]

    def improves_on_study(self, metrics: dict[str, Any]) -> bool:
        """True when this run's objective beats every COMPLETE trial of the study so far, in the
        study's direction (always for a multi-objective study, whose trials are not ranked)."""
        if len(self.study.directions) > 1:
            return True
        values = self.returned_values(metrics)
        value = values[0] if isinstance(values, list) else values
        if value is None:
            return False
        try:
            best = self.study.best_value
        except ValueError:  # no COMPLETE trial yet
            return True
        if self.study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return value > best
        return value < best

    def metrics_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"optuna_study": self.study_name, "optuna_trial": self.number}
        if self.attempt is not None:
            fields["optuna_attempt"] = self.attempt
        if self.stopped_early:
            fields["pruned_at_step"] = self.pruned_at_step
        return fields

    def after_metrics_written(self, metrics: dict[str, Any], run_dir: Path) -> None:
        """Keep this attempt's outcome for the trial's runner, which tells the study."""
        self.written = metrics
