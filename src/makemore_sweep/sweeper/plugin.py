"""The `makemore_optuna` Hydra sweeper: hydra-optuna-sweeper 1.4, made resumable and pruning-aware.

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
continued from their checkpoints); `max_failure_rate` is a share of `n_trials`. The sweep
itself lives in `study_run.py`; this module stays light because Hydra imports it on every start.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import DictConfig

from makemore_sweep.errors import UserError, debug_enabled, report_user_error


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
    _target_: str = "makemore_sweep.sweeper.plugin.MakemoreOptunaSweeper"
    # metrics.json keys the trials return, in the order of `direction`; e.g. [val_loss,n_params].
    objectives: list[str] = field(default_factory=lambda: ["val_loss"])
    # One job per trial, this many at once (upstream's batches); used when workers is 0, or null with n_jobs > 1.
    n_jobs: int = 1
    # Long-lived workers that each pull trial after trial, placed by the launcher; null: 2 when
    # n_jobs is 1 (the fastest on 2 cores; see settings.py), else n_jobs-sized batches of one job per trial.
    workers: int | None = None
    # Failed trials are replaced; the sweep stops once more than this share of n_trials failed.
    max_failure_rate: float = 0.2
    # Dead workers (SIGKILL, OOM, a lost node) replaced per sweep run before it stops: enough for
    # every worker of a usual sweep to die once or twice, few enough that a worker that cannot
    # start at all (a broken environment) ends the sweep within seconds (docs/sweeps.md).
    max_worker_restarts: int = 4
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


class MakemoreOptunaSweeper(Sweeper):
    """Hydra's plugin class: Hydra's public Sweeper interface; user errors become one clean line."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        objectives: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        workers: int | None,
        max_failure_rate: float,
        max_worker_restarts: int,
        custom_search_space: str | None,
        params: DictConfig | None,
        pruner: str,
        pruner_options: DictConfig,
        enqueue: list[Any],
        heartbeat_interval: float,
        grace_period: float,
        export_dir: str | None,
    ) -> None:
        # Optuna is imported later, not here: Hydra scans plugins on every start. The sampler
        # is instantiated once the study is open (its seed moves on when a study is resumed).
        from makemore_sweep.sweeper.settings import SweepSettings, objective_list

        self.settings = SweepSettings(
            sampler=sampler,
            direction=direction,
            objectives=objective_list(objectives),
            storage=None if storage is None else str(storage),
            study_name=study_name,
            n_trials=int(n_trials),
            n_jobs=int(n_jobs),
            workers=None if workers is None else int(workers),
            max_failure_rate=float(max_failure_rate),
            max_worker_restarts=int(max_worker_restarts),
            custom_search_space=custom_search_space,
            params=params,
            pruner=pruner,
            pruner_options=pruner_options,
            enqueue=list(enqueue or []),
            heartbeat_interval=float(heartbeat_interval),
            grace_period=float(grace_period),
            export_dir=export_dir,
        )
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.launcher = None  # launchers are made per sweep mode (study_run.py)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def sweep(self, arguments: list[str]) -> None:
        assert (
            self.config is not None
            and self.hydra_context is not None
            and self.task_function is not None
        )
        from makemore_sweep.sweeper.study_run import run_sweep

        try:
            run_sweep(self.config, self.hydra_context, self.task_function, self.settings, arguments)
        except UserError as error:
            if debug_enabled():
                raise
            report_user_error(error)
            # SystemExit passes through Hydra's error reporting, which would print a traceback.
            sys.exit(error.exit_code)
