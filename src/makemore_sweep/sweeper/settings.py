"""The keys of `hydra.sweeper` as one checked value, and the sampler they describe."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from makemore_sweep.errors import ConfigError
from makemore_sweep.training.metrics_file import OBJECTIVE_KEYS

SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
TPE_TARGET = "optuna.samplers.TPESampler"
GRID_TARGET = "optuna.samplers.GridSampler"
# Workers when `hydra.sweeper.workers` is null and n_jobs is 1. On a 2-core machine two
# one-threaded workers are expected to beat one two-threaded worker (the BN-MLP's small
# matrices keep a second thread of one process mostly idle); `scripts/bench_sweep.py
# --also-workers 1` measures both side by side (BENCHMARKS.md).
DEFAULT_WORKERS = 2
# Seeds of the workers' samplers are this far apart, so no two workers draw the same proposals.
WORKER_SEED_STRIDE = 100_003
DEV_LOSS = "val_loss"  # the objective of a sweep that names none


@dataclass(frozen=True)
class SweepSettings:
    sampler: Any
    direction: Any
    objectives: tuple[str, ...]
    storage: str | None
    study_name: str | None
    n_trials: int
    n_jobs: int
    workers: int | None
    max_failure_rate: float
    max_worker_restarts: int
    custom_search_space: str | None
    params: Mapping[str, Any] | None
    pruner: str
    pruner_options: Any
    enqueue: Sequence[Any]
    heartbeat_interval: float
    grace_period: float
    export_dir: str | None

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def check(self) -> None:
        self.check_objectives()
        if self.n_trials < 1:
            raise ConfigError(
                f"hydra.sweeper.n_trials={self.n_trials} is invalid: it must be an integer ≥ 1."
            )
        if self.n_jobs < 1:
            raise ConfigError(
                f"hydra.sweeper.n_jobs={self.n_jobs} is invalid: it must be an integer ≥ 1."
            )
        if self.workers is not None and self.workers < 0:
            raise ConfigError(
                f"hydra.sweeper.workers={self.workers} is invalid: it must be null, 0 or a positive integer."
            )
        if self.max_worker_restarts < 0:
            raise ConfigError(
                f"hydra.sweeper.max_worker_restarts={self.max_worker_restarts} is invalid: it must be an integer ≥ 0."
            )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} is invalid: it must lie in [0, 1]."
            )
        if not 0 < self.heartbeat_interval < self.grace_period:
            raise ConfigError(
                "hydra.sweeper.heartbeat_interval and grace_period are invalid: "
                "they must satisfy 0 < heartbeat_interval < grace_period."
            )

    def check_objectives(self) -> None:
        shown = f"[{','.join(self.objectives)}]"
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(
                f"hydra.sweeper.objectives={shown} is invalid: list one or more distinct metrics.json keys."
            )
        for key in self.objectives:
            if key not in OBJECTIVE_KEYS:
                close = difflib.get_close_matches(key, OBJECTIVE_KEYS, n=1)
                hint = (
                    f"did you mean {close[0]}?"
                    if close
                    else f"choose among {', '.join(OBJECTIVE_KEYS)}."
                )
                raise ConfigError(
                    f"hydra.sweeper.objectives names {key}, which is not a numeric metrics.json key; {hint}"
                )
        n_directions = len(directions(self.direction))
        if n_directions != len(self.objectives):
            raise ConfigError(
                f"hydra.sweeper.direction gives {n_directions} direction(s) for the {len(self.objectives)} objective(s) "
                f"{shown}: give one each, e.g. hydra.sweeper.direction=[{','.join(['minimize'] * len(self.objectives))}]."
            )
        # Trials report the dev loss as they train, so only a dev-loss study can be pruned; Optuna
        # cannot prune a multi-objective study at all.
        if str(self.pruner).lower() != "none" and self.objectives != (DEV_LOSS,):
            raise ConfigError(
                f"hydra.sweeper.pruner={self.pruner} cannot prune a sweep over hydra.sweeper.objectives={shown} "
                "(Optuna prunes single-objective studies on the dev loss only); set hydra.sweeper.pruner=none."
            )

    def worker_count(self) -> int:
        """Long-lived workers to run; 0 means one job per trial, in batches of n_jobs (upstream's way)."""
        if self.workers is not None:
            return self.workers
        return 0 if self.n_jobs > 1 else DEFAULT_WORKERS

    def allowed_failures(self) -> float:
        return self.max_failure_rate * self.n_trials

    def with_n_trials(self, n_trials: int) -> SweepSettings:
        return replace(self, n_trials=n_trials)


def objective_list(objectives: Any) -> tuple[str, ...]:
    """`hydra.sweeper.objectives` as a tuple of names; null means the dev loss alone."""
    if objectives is None:
        return (DEV_LOSS,)
    values = (
        list(objectives)
        if isinstance(objectives, (list, tuple)) or OmegaConf.is_list(objectives)
        else [objectives]
    )
    return tuple(str(v) for v in values)


def directions(direction: Any) -> list[str]:
    values = (
        list(direction)
        if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction)
        else [direction]
    )
    return [v.name if isinstance(v, Enum) else str(v) for v in values]


def study_name(settings: SweepSettings, config: DictConfig) -> str:
    if settings.study_name:
        return str(settings.study_name)
    return str(config.hydra.runtime.choices.get("sweep") or "makemore")


def build_sampler(sampler_config: Any, *, seed_offset: int, parallel: bool) -> Any:
    """The configured sampler; its seed moves on by `seed_offset` (trials so far, and the worker).

    A resumed study would otherwise replay its first proposals, and workers would all propose
    the same points. With trials in flight in parallel, TPE lies about the running ones
    (`constant_liar`) so that it does not propose one point several times. A grid sampler is
    returned as a partial: it still needs the grid of the search space.
    """
    config = (
        OmegaConf.to_container(sampler_config, resolve=True)
        if OmegaConf.is_config(sampler_config)
        else dict(sampler_config)
    )
    assert isinstance(config, dict)
    if config.get("seed") is not None:
        config["seed"] = int(config["seed"]) + seed_offset
    if config.get("_target_") == TPE_TARGET and parallel:
        config["constant_liar"] = True
    return instantiate(config, _execution_whitelist_=SAMPLER_WHITELIST)


def is_grid(sampler_config: Any) -> bool:
    return str(sampler_config.get("_target_")) == GRID_TARGET
