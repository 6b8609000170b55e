"""A callback that follows a run: best dev loss, time to target, elapsed training time."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L

import makemore_sweep


class RunMonitor(L.Callback):
    """Tracks the best validation loss and when it first went under `target_loss`.

    Times are wall-clock seconds of `fit` (validation included, start-up excluded); its
    state goes into checkpoints so a resumed run continues the clock instead of restarting it.
    """

    def __init__(self, target_loss: float = 2.2) -> None:
        self.target_loss = target_loss
        self.best_val_loss = math.inf
        self.best_step: int | None = None
        self.time_to_target_s: float | None = None
        self.steps_to_target: int | None = None
        self.elapsed_before_s = 0.0
        self.val_history: list[tuple[int, float]] = []
        self.startup_s: float | None = None  # start-up clock → first training step
        self.resumed_from_step: int | None = None  # the step a resumed run continued from
        self._started: float | None = None

    def elapsed_s(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.elapsed_before_s + running

    def start_clock(self, step: int) -> None:
        """Training starts (or goes on) at optimiser step `step`."""
        self._started = time.perf_counter()
        if step > 0:  # restored from a checkpoint before training started
            self.resumed_from_step = step

    def stop_clock(self) -> None:
        self.elapsed_before_s = self.elapsed_s()
        self._started = None

    def validated(self, step: int, val_loss: float) -> bool:
        """Record the dev loss at `step`; True when it is the best so far."""
        self.val_history.append((step, val_loss))
        if self.time_to_target_s is None and val_loss < self.target_loss:
            self.time_to_target_s = round(self.elapsed_s(), 3)
            self.steps_to_target = step
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_step = val_loss, step
            return True
        return False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_clock(trainer.global_step)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.startup_s is None:
            self.startup_s = round(time.perf_counter() - makemore_sweep.STARTUP_CLOCK, 3)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        self.validated(trainer.global_step, float(trainer.callback_metrics["val_loss"]))

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "time_to_target_s": self.time_to_target_s,
            "steps_to_target": self.steps_to_target,
            "elapsed_s": self.elapsed_s(),
            "val_history": [list(p) for p in self.val_history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val_loss = state_dict["best_val_loss"]
        self.best_step = state_dict["best_step"]
        self.time_to_target_s = state_dict["time_to_target_s"]
        self.steps_to_target = state_dict["steps_to_target"]
        self.elapsed_before_s = state_dict["elapsed_s"]
        self.val_history = [(int(s), float(v)) for s, v in state_dict["val_history"]]
