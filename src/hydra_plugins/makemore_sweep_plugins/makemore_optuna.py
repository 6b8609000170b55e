"""The `makemore_optuna` Hydra sweeper: hydra-optuna-sweeper 1.4, made resumable and pruning-aware.

Runs in the sweep process; Hydra's plugin scan imports it on every start, so it stays light: its
keys and their checks are `makemore_sweep.config.sweep_settings` (no optuna or torch), and the sweep
itself, `makemore_sweep.sweeper.driver`, is imported only when a sweep runs. It lives here, beside
the registration, as upstream's plugin does: the class that imports the sweep sits above it, so
no module of the sweeper imports back up (tests/test_layout.py finds import cycles).
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from makemore_sweep.config.sweep_settings import SweepSettings
from makemore_sweep.errors import UserError, debug_enabled, report_user_error


class MakemoreOptunaSweeper(Sweeper):
    """Hydra's plugin class: Hydra's public Sweeper interface; user errors become one clean line."""

    def __init__(self, **options: Any) -> None:
        # Hydra instantiates this class with the keys of the schema (config/sweep_settings.py), checked.
        # Optuna is imported later, not here; the sampler is instantiated once the study is open
        # (its seed moves on when a study is resumed).
        self.settings = SweepSettings.from_hydra(options)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.launcher = None  # launchers are made per sweep mode (driver.py)

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
        from makemore_sweep.sweeper.driver import run_sweep

        try:
            run_sweep(self.config, self.hydra_context, self.task_function, self.settings, arguments)
        except UserError as error:
            if debug_enabled():
                raise
            report_user_error(error)
            # SystemExit passes through Hydra's error reporting, which would print a traceback.
            sys.exit(error.exit_code)
