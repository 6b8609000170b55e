"""A training run's side of an Optuna sweep: its trial, pruning, and what it tells the study.

The sweeper (`optuna_sweeper.py`) launches each trial as a Hydra job with the overrides
`+optuna_trial.number=N +optuna_trial.study_name=NAME +optuna_trial.base_dir=DIR`; the job
resolves `hydra.sweeper.storage` against DIR as the sweeper did, opens that trial, reports its dev loss at every
validation, and, when the pruner stops it, records the trial as PRUNED itself (after writing
metrics.json). COMPLETE and FAIL are recorded by the sweeper from the job's return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from makemore_sweep.errors import ConfigError, StorageError
from makemore_sweep.pruning import OptunaPruning, build_pruner
from makemore_sweep.study_storage import open_storage, resolve_storage_url
from makemore_sweep.tracking import mask_secrets

log = logging.getLogger(__name__)

TRIAL_CONFIG_KEY = "optuna_trial"
# Figures of metrics.json copied to the trial's user attributes, for reports and the sweep summary.
OUTCOME_ATTRS = ("val_loss", "test_loss", "train_loss", "n_params", "steps", "train_time_s", "state", "pruned_at_step")


@dataclass
class TrialLink:
    study: optuna.Study
    trial: optuna.Trial
    pruning: OptunaPruning

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def study_name(self) -> str:
        return self.study.study_name

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrialLink | None:
        """The trial this run belongs to, or None when the run is not part of an Optuna sweep."""
        identity = cfg.get(TRIAL_CONFIG_KEY)
        if identity is None:
            return None
        sweeper = HydraConfig.get().sweeper
        if "pruner" not in sweeper:
            raise ConfigError(f"{TRIAL_CONFIG_KEY} is set but hydra/sweeper is not makemore_optuna; run sweeps with sweep=NAME.")
        name, number = str(identity.study_name), int(identity.number)
        url = resolve_storage_url(sweeper.storage, name, Path(identity.base_dir))
        pruner = build_pruner(sweeper.pruner, sweeper.pruner_options)
        storage = open_storage(url)
        try:
            # The trial never samples, so a RandomSampler keeps opening it cheap.
            study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(), pruner=pruner)
            trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), number)
        except KeyError as error:
            raise StorageError(f"Optuna study {name!r} has no trial {number} in {mask_secrets(url)}.") from error
        trial = optuna.trial.Trial(study, trial_id)
        return cls(study=study, trial=trial, pruning=OptunaPruning(trial))

    def label_loggers(self, cfg: DictConfig) -> None:
        """W&B: one group per study, so a sweep's runs are compared together."""
        wandb_cfg = (cfg.get("logger") or {}).get("wandb")
        if wandb_cfg is not None and wandb_cfg.get("group") is None:
            wandb_cfg.group = self.study_name

    def metrics_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"optuna_study": self.study_name, "optuna_trial": self.number}
        if self.pruning.pruned:
            fields["pruned_at_step"] = self.pruning.pruned_at_step
        return fields

    def record_outcome(self, metrics: dict[str, Any], run_dir: Path) -> None:
        """Copy the run's figures to the trial; a pruned trial is recorded PRUNED here."""
        try:
            self.trial.set_user_attr("run_dir", str(Path(run_dir).resolve()))
            for key in OUTCOME_ATTRS:
                if metrics.get(key) is not None:
                    self.trial.set_user_attr(key, metrics[key])
            if self.pruning.pruned:
                # Optuna records the last reported dev loss as the value of a pruned trial.
                self.study.tell(self.number, state=TrialState.PRUNED)
        except UpdateFinishedTrialError:
            log.warning("Optuna trial %d was already finished by another process; its outcome is in %s.", self.number, run_dir)
