"""The keys of the `makemore_optuna` Hydra sweeper (`hydra.sweeper.*`), listed once, and their checks.

A config group's schema like the others in config/, read in every process that composes a
config: Hydra's plugin scan imports it on every start (through
`hydra_plugins/makemore_sweep_plugins/makemore_optuna.py`, the plugin class Hydra instantiates),
so it stays light: no optuna or torch. It owns the schema Hydra checks a sweep's config against,
and `SweepSettings`, the same fields as the sweep (`makemore_sweep.sweeper`) reads them.

It keeps the upstream plugin's keys (`hydra.sweeper.n_trials`, `.n_jobs`, `.storage`,
`.study_name`, `.sampler`, `.params`, `.direction`, `.max_failure_rate`,
`.custom_search_space`) and adds:

- `pruner` (median | hyperband | successive_halving | percentile | patient | none) with `pruner_options`,
  the Optuna keyword arguments of each pruner by name;
- `objectives`: the metrics.json keys a trial returns, one `direction` each; several make a
  multi-objective study whose Pareto front is printed, saved and exported (no pruning then);
- `enqueue`: parameter sets a new study tries first (e.g. the lecture configuration);
- `workers`: long-lived asynchronous workers, placed by the launcher (docs/sweeps.md);
- `heartbeat_interval` / `grace_period`: how abandoned trials are told from live ones;
- `export_dir`: where the best trial is written as an experiment (default ./configs/experiment under the folder the sweep runs in).

Semantics differ from upstream where users asked for it: `n_trials` is the study's total of
finished (COMPLETE + PRUNED) trials, so re-running a command resumes it (interrupted trials are
continued from their checkpoints); `max_failure_rate` is a share of `n_trials`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import OmegaConf

from makemore_sweep.config.schema import OptunaTrial
from makemore_sweep.errors import ConfigError

# Workers when `hydra.sweeper.workers` is null and n_jobs is 1. On a 2-core machine two
# one-threaded workers are expected to beat one two-threaded worker (the BN-MLP's small
# matrices keep a second thread of one process mostly idle); `scripts/bench_sweep.py
# --also-workers 1` measures both side by side (BENCHMARKS.md).
DEFAULT_WORKERS = 2
DEV_LOSS = "val_loss"  # the objective of a sweep that names none
# The numeric figures of metrics.json a sweep may optimise (`hydra.sweeper.objectives`).
OBJECTIVE_KEYS = (
    "val_loss",
    "test_loss",
    "train_loss",
    "init_loss",
    "n_params",
    "steps",
    "best_step",
    "train_time_s",
    "time_to_target_s",
    "steps_to_target",
    "novel_fraction",
)
# Where a trial's job finds its trial in its config (worker.py identity_overrides, trial_hook.py).
TRIAL_CONFIG_KEY = OptunaTrial.PATH


def _default_pruner_options() -> dict[str, Any]:
    return {
        # Stop a trial whose best dev loss so far is worse than the median of completed trials
        # at the same step, once 5 trials have completed.
        "median": {"n_startup_trials": 5, "n_warmup_steps": 0, "interval_steps": 1},
        # Brackets from the first validation to the full budget (as measured on beat_2p2).
        "hyperband": {
            "min_resource": "${trainer.val_every_n_steps}",
            "max_resource": "${trainer.max_steps}",
            "reduction_factor": 3,
        },
        "successive_halving": {"min_resource": "auto", "reduction_factor": 4},
        "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 0},
        # The median's rule, applied only once a trial's dev loss has not improved for 2
        # validations: patience and min_delta are PatientPruner's, the rest the MedianPruner's.
        "patient": {"patience": 2, "min_delta": 0.0, "n_startup_trials": 5, "n_warmup_steps": 0},
        "none": {},
    }


@dataclass
class MakemoreOptunaSweeperConf(OptunaSweeperConf):
    """Every key of `hydra.sweeper`: the one list of them. Hydra checks a sweep's config against
    it (an unknown key or a value of the wrong type is one sentence), and hands the values to
    `MakemoreOptunaSweeper`, which keeps them as `SweepSettings`."""

    _target_: str = "hydra_plugins.makemore_sweep_plugins.makemore_optuna.MakemoreOptunaSweeper"
    # metrics.json keys the trials return, in the order of `direction`; e.g. [val_loss,n_params].
    objectives: list[str] = field(default_factory=lambda: [DEV_LOSS])
    # One job per trial, this many at once (upstream's batches); used when workers is 0, or null with n_jobs > 1.
    n_jobs: int = 1
    # Long-lived workers that each pull trial after trial, placed by the launcher; null: 2 when
    # n_jobs is 1 (the fastest on 2 cores; see DEFAULT_WORKERS), else n_jobs-sized batches of one job per trial.
    workers: int | None = None
    # Failed trials are replaced; the sweep stops once more than this share of n_trials failed.
    max_failure_rate: float = 0.2
    # Dead workers (SIGKILL, OOM, a lost node) replaced per sweep run before it stops: enough for
    # every worker of a usual sweep to die once or twice, few enough that a worker that cannot
    # start at all (a broken environment) ends the sweep within seconds (docs/sweeps.md).
    max_worker_restarts: int = 4
    # Trials a worker trains at once as one fused network (docs/sweeps.md, "Packed trials"):
    # trials that share a cohort (one tensor shape, optimiser kind and batch size) share it,
    # and a slot freed by a trial's end takes the next trial at once; 1 trains each alone.
    pack: int = 1
    # The pruner with the best anytime curve over 3 seeds of beat_2p2 (BENCHMARKS.md).
    pruner: str = "hyperband"
    pruner_options: dict[str, Any] = field(default_factory=_default_pruner_options)
    enqueue: list[Any] = field(default_factory=list)
    heartbeat_interval: float = 10.0
    grace_period: float = 60.0
    export_dir: str | None = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="makemore_optuna",
    node=MakemoreOptunaSweeperConf,
    provider="makemore_sweep",
)


class SweepSettings(MakemoreOptunaSweeperConf):
    """The keys of `hydra.sweeper` as the sweep reads them, with the checks Hydra's types cannot make.

    The schema's fields, not a copy of them: the values are as Hydra composed them (the sampler,
    params and pruner options stay DictConfigs), but for the few normalised by `from_hydra`.
    """

    @classmethod
    def from_hydra(cls, options: Mapping[str, Any]) -> SweepSettings:
        settings = cls(**options)
        # Plain values where the sweep compares, prints or keeps them.
        settings.objectives = list(objective_list(settings.objectives))
        settings.storage = None if settings.storage is None else str(settings.storage)
        settings.enqueue = list(settings.enqueue or [])
        return settings

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
        if self.pack < 1:
            raise ConfigError(
                f"hydra.sweeper.pack={self.pack} is invalid: it must be an integer ≥ 1 (1 trains each trial alone)."
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
        if str(self.pruner).lower() != "none" and tuple(self.objectives) != (DEV_LOSS,):
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
