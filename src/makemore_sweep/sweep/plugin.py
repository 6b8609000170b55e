"""The `makemore_optuna` Hydra sweeper: hydra-optuna-sweeper 1.4, made resumable and pruning-aware.

It keeps the upstream plugin's keys (`hydra.sweeper.n_trials`, `.n_jobs`, `.storage`,
`.study_name`, `.sampler`, `.params`, `.direction`, `.max_failure_rate`,
`.custom_search_space`) and adds:

- `pruner` (median | hyperband | successive_halving | percentile | none) with `pruner_options`,
  the Optuna keyword arguments of each pruner by name;
- `enqueue`: parameter sets a new study tries first (e.g. the lecture configuration);
- `heartbeat_interval` / `grace_period`: how abandoned trials are told from live ones;
- `export_dir`: where the best trial is written as an experiment (default conf/experiment).

Semantics differ from upstream where users asked for it: `n_trials` is the study's total of
finished (COMPLETE + PRUNED) trials, so re-running a command resumes it; `max_failure_rate` is
a share of `n_trials`. The loop itself lives in `resumable_sweep.py`; this module stays light
because Hydra imports it on every start.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

from makemore_sweep.errors import UserError, debug_enabled, report_user_error


def _default_pruner_options() -> dict[str, Any]:
    return {
        # Stop a trial whose best dev loss so far is worse than the median of completed trials
        # at the same step, once 5 trials have completed.
        "median": {"n_startup_trials": 5, "n_warmup_steps": 0, "interval_steps": 1},
        "hyperband": {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
        "successive_halving": {"min_resource": "auto", "reduction_factor": 4},
        "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 0},
        "none": {},
    }


@dataclass
class MakemoreOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "makemore_sweep.sweep.plugin.MakemoreOptunaSweeper"
    # Trials launched at once; more than 1 needs a parallel launcher (hydra/launcher=local).
    n_jobs: int = 1
    # Failed trials are replaced; the sweep stops once more than this share of n_trials failed.
    max_failure_rate: float = 0.2
    pruner: str = "median"
    pruner_options: dict[str, Any] = field(default_factory=_default_pruner_options)
    enqueue: list[Any] = field(default_factory=list)
    heartbeat_interval: int = 10
    grace_period: int = 60
    export_dir: str | None = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="makemore_optuna",
    node=MakemoreOptunaSweeperConf,
    provider="makemore_sweep",
)


class MakemoreOptunaSweeper(OptunaSweeper):
    """Hydra's plugin class: builds the sweep and turns user errors into one clean line."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: DictConfig | None,
        pruner: str,
        pruner_options: DictConfig,
        enqueue: list[Any],
        heartbeat_interval: int,
        grace_period: int,
        export_dir: str | None,
    ) -> None:
        # Optuna is imported here, not at module level: Hydra scans plugins on every start.
        from makemore_sweep.sweep.study_loop import ResumableOptunaSweep, SweepExtras

        # Not super().__init__: the upstream one instantiates the sampler now, and ours is
        # instantiated once the study is open (its seed moves on when a study is resumed).
        self.sweeper = ResumableOptunaSweep(
            sampler=sampler,
            direction=direction,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs,
            max_failure_rate=max_failure_rate,
            custom_search_space=custom_search_space,
            params=params,
            extras=SweepExtras(
                pruner=pruner,
                pruner_options=pruner_options,
                enqueue=list(enqueue or []),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                export_dir=export_dir,
            ),
        )

    def sweep(self, arguments: list[str]) -> None:
        try:
            return self.sweeper.sweep(arguments)
        except UserError as error:
            if debug_enabled():
                raise
            report_user_error(error)
            # SystemExit passes through Hydra's error reporting, which would print a traceback.
            sys.exit(error.exit_code)
