"""What a caller adds to a training run from outside, so that training knows nothing of its callers.

A sweep's trial (pruning, reporting to the study) and the report's embedding figure are
`RunHook`s: Lightning callbacks that may also adjust the configuration before the loggers are
built, stop the run early, add fields to metrics.json, act once it is written, give images
for the run's W&B summary, and say how an interrupted run is continued. The entry point
(`cli/train.py`) decides which hooks a run gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig


class RunHook(L.Callback):
    """A callback with a say in the run's records; every method is optional."""

    def configure(self, cfg: DictConfig) -> None:
        """Adjust the run's configuration (e.g. the W&B group) before the loggers are built."""

    def validated(self, step: int, value: float, max_steps: int) -> None:
        """A validation ended with dev loss `value` at optimiser step `step` (of `max_steps`).

        Called for runs that no Trainer validates on their own (the members of a packed network,
        training/pack_engine.py); a hook that wants the run stopped says so in `stopped_early`.
        """

    @property
    def stopped_early(self) -> bool:
        """True when this hook stopped training before its budget (the run is then `pruned`)."""
        return False

    def metrics_fields(self) -> dict[str, Any]:
        """Fields to add to metrics.json."""
        return {}

    def after_metrics_written(self, metrics: dict[str, Any], run_dir: Path) -> None:
        """Act on the run's outcome once metrics.json is on disk."""

    def images(self, run_dir: Path, metrics: dict[str, Any]) -> dict[str, Path]:
        """PNG files to attach to the run's W&B summary, by key (`metrics`: metrics.json's)."""
        return {}

    def continue_advice(self, run_dir: Path) -> str | None:
        """How to continue this run once interrupted, when not with `makemore-train resume=RUN_DIR`
        (a sweep's trial is continued by its sweep); None leaves the default advice."""
        return None
