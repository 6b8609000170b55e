"""Where the next trial comes from: an abandoned one to continue first, else a new one from the sampler.

Used alike by the sweep process (one job per trial) and by long-lived workers. A continued
trial keeps its number, parameters and folder; its run resumes from `checkpoints/last.ckpt`
there when one was written (else it starts over in the same folder).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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
from makemore_sweep.sweeper.leases import TrialLeases
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
        lock_path: Path | None = None,
    ) -> None:
        self.lock_path = lock_path
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
        for abandoned in self.leases.abandoned():
            if not self.leases.take_over(abandoned.number):
                continue
            trial_id = self.leases.trial_id(abandoned.number)
            frozen = self.storage.get_trial(trial_id)
            self.storage.set_trial_user_attr(
                trial_id, CONTINUED_ATTR, int(frozen.user_attrs.get(CONTINUED_ATTR, 0)) + 1
            )
            self.storage.set_trial_user_attr(trial_id, CONTINUED_REASON_ATTR, abandoned.reason)
            params = self._complete_params(trial_id, dict(frozen.params))
            return ClaimedTrial(abandoned.number, trial_id, params, continued=abandoned.reason)
        return None

    def ask_new(self) -> ClaimedTrial:
        trial = self.space.suggest(self.study, self.config)
        trial_id = self.leases.trial_id(trial.number)
        self.leases.claim(trial_id)
        return ClaimedTrial(trial.number, trial_id, dict(trial.params))

    def next(self) -> ClaimedTrial | None:
        """An abandoned trial to continue, else a new one while the study has room, else None."""
        with self._asking():
            continued = self.take_abandoned()
            if continued is not None:
                return continued
            return self.ask_new() if self.missing() > 0 else None

    @contextmanager
    def _asking(self) -> Iterator[None]:
        """Take over, count and ask under a lock of the study's folder where the storage is a
        file: no two workers of this machine take over one trial or ask for the last missing
        one together. Across hosts (a database server) take_over's read-back settles a tie, and
        the last trial may be asked by one more worker each."""
        if self.lock_path is None:
            yield
            return
        # A folder's descriptor takes flock like a file's, and no lock file is left behind.
        descriptor = os.open(self.lock_path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            except OSError:  # no locks on this file system: at most one trial more per worker
                yield
                return
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

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
