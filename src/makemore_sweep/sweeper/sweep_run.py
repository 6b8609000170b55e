"""What the parts of one sweep share: its settings, study and storage, its printer, its id.

Its own module so that the sweep's start (study_run.py) and the two ways of running trials
(worker_pool.py, batch_loop.py) import it without importing each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import optuna
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from makemore_sweep.errors import UserError
from makemore_sweep.sweeper.leases import FAIL_REASON_ATTR
from makemore_sweep.sweeper.progress_printer import SweepPrinter
from makemore_sweep.sweeper.search_space import SearchSpace
from makemore_sweep.sweeper.settings import SweepSettings
from makemore_sweep.sweeper.trial_outcome import failures_of_sweep


class TooManyFailures(UserError):
    """More trials failed than `hydra.sweeper.max_failure_rate` allows."""


@dataclass
class SweepRun:
    """Everything the parts of one sweep share."""

    config: DictConfig  # the sweep's own configuration (Hydra's master config)
    hydra_context: HydraContext
    task_function: TaskFunction
    settings: SweepSettings
    space: SearchSpace
    study: optuna.Study
    storage: BaseStorage
    storage_url: str
    n_earlier: int  # trials in the study before this sweep started
    label: str  # the study's identity, as its folder and exports name it (ownership.py)
    printer: SweepPrinter = field(default_factory=SweepPrinter)
    sweep_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def base_dir(self) -> str:
        return str(self.config.hydra.runtime.cwd)

    def failures_of_this_sweep(self) -> list[FrozenTrial]:
        return failures_of_sweep(self.study, self.sweep_id)

    def check_failure_budget(self, failed: list[FrozenTrial]) -> None:
        if not failed or len(failed) <= self.settings.allowed_failures():
            return
        last = max(failed, key=lambda t: t.datetime_complete or t.datetime_start or 0)
        raise TooManyFailures(
            f"Too many failed trials: {len(failed)}, more than hydra.sweeper.max_failure_rate={self.settings.max_failure_rate} "
            f"of n_trials={self.settings.n_trials} allows; the last, trial {last.number}, failed with: "
            f"{last.user_attrs.get(FAIL_REASON_ATTR, 'an unknown error')}"
        )
