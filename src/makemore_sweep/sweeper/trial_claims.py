"""Where the next trial comes from: an abandoned one to continue first, else a new one from the sampler.

Used alike by the sweep process (one job per trial) and by long-lived workers. A continued
trial keeps its number, parameters and folder; its run resumes from `checkpoints/last.ckpt`
there when one was written (else it starts over in the same folder).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.types import Quote, QuotedString
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT
from makemore_sweep.sweeper.leases import OWNER_ATTR, TrialLeases
from makemore_sweep.sweeper.progress_printer import count_states, finished
from makemore_sweep.sweeper.search_space import SearchSpace

TRIAL_CONFIG_KEY = "optuna_trial"  # where a trial's job finds its trial: identity_overrides below
CONTINUED_ATTR = "continued"  # how many times the trial was taken over and continued
CONTINUED_REASON_ATTR = "continued_reason"


@dataclass(frozen=True)
class ClaimedTrial:
    number: int
    trial_id: int
    params: dict[str, Any]
    continued: str | None = None  # why it is continued; None for a new trial


class TrialSource:
    """Hands out trials of one study to one process, toward `n_trials` finished trials in all."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        leases: TrialLeases,
        space: SearchSpace,
        config: DictConfig,
        n_trials: int,
        claim_lock: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self.claim_lock = claim_lock  # storage.claim_lock of the study, where there is one
        self.study = study
        self.storage = storage
        self.leases = leases
        self.space = space
        self.config = config
        self.n_trials = n_trials

    def counts(self) -> dict[TrialState, int]:
        return count_states(self.study)

    def missing(self) -> int:
        """Trials nobody runs yet: n_trials less the finished ones and those under way (live or not)."""
        counts = self.counts()
        return self.n_trials - finished(counts) - counts[TrialState.RUNNING]

    def done(self) -> bool:
        return finished(self.counts()) >= self.n_trials

    def take_abandoned(self) -> ClaimedTrial | None:
        """Take over the oldest abandoned trial, if any (another process may win it: then the next)."""
        with self.claim_lock():
            return self._take_abandoned()

    def _take_abandoned(self) -> ClaimedTrial | None:
        for abandoned in self.leases.abandoned():
            if self.leases.take_over(abandoned):
                return self._continued(abandoned.number, abandoned.reason)
        return None

    def _continued(self, number: int, reason: str) -> ClaimedTrial:
        trial_id = self.leases.trial_id(number)
        frozen = self.storage.get_trial(trial_id)
        times = int(frozen.user_attrs.get(CONTINUED_ATTR, 0)) + 1
        self.storage.set_trial_user_attr(trial_id, CONTINUED_ATTR, times)
        self.storage.set_trial_user_attr(trial_id, CONTINUED_REASON_ATTR, reason)
        params = self._complete_params(trial_id, dict(frozen.params))
        return ClaimedTrial(number, trial_id, params, continued=reason)

    def ask_new(self) -> ClaimedTrial:
        """A new trial from the sampler (or the enqueued queue). A trial put back by another
        process's takeover may be popped here first: it is continued, not started afresh."""
        trial = self.space.suggest(self.study, self.config)
        trial_id = self.leases.trial_id(trial.number)
        earlier_owner = self.storage.get_trial(trial_id).user_attrs.get(OWNER_ATTR)
        self.leases.claim(trial_id)
        if earlier_owner is not None:
            return self._continued(trial.number, "put back by another process's takeover")
        return ClaimedTrial(trial.number, trial_id, dict(trial.params))

    def next(self) -> ClaimedTrial | None:
        """An abandoned trial to continue, else a new one while the study has room, else None."""
        with self.claim_lock():
            continued = self._take_abandoned()
            if continued is not None:
                return continued
            return self.ask_new() if self.missing() > 0 else None

    def _complete_params(self, trial_id: int, params: dict[str, Any]) -> dict[str, Any]:
        """Sample what a trial asked by a process killed mid-way never got (rare), so it can run."""
        missing = {name: d for name, d in self.space.distributions.items() if name not in params}
        if not missing:
            return params
        trial = optuna.trial.Trial(self.study, trial_id)
        for name, distribution in missing.items():
            params[name] = suggest(trial, name, distribution)
        return params


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Optuna's public suggest_* call for one distribution."""
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"cannot sample {name}: {type(distribution).__name__} is not supported")


def resume_overrides(run_dir: Path) -> list[str]:
    """What makes a continued trial's run resume: its last checkpoint, when it wrote one."""
    return ["ckpt_path=last"] if (run_dir / LAST_CHECKPOINT).is_file() else []


def trial_run_dir(trial_config: DictConfig) -> Path:
    """The folder a trial's run writes to, from its composed configuration."""
    sweep = trial_config.hydra.sweep
    return Path(str(sweep.dir)) / str(sweep.subdir)


def identity_overrides(number: int, study_name: str, base_dir: str) -> list[str]:
    """Overrides that let a trial's job find its trial (see trial_reporting.py). The storage URL,
    which may hold a password, is never one of them (launchers log overrides)."""

    def quoted(text: str) -> str:
        return QuotedString(text=text, quote=Quote.single).with_quotes()

    return [
        f"+{TRIAL_CONFIG_KEY}.number={number}",
        f"+{TRIAL_CONFIG_KEY}.study_name={quoted(study_name)}",
        f"+{TRIAL_CONFIG_KEY}.base_dir={quoted(base_dir)}",
    ]
