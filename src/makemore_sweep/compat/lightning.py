"""The private names of Lightning that makemore-sweep relies on, in one place, each with its reason.

tests/test_compat.py fails loudly when a new Lightning release renames or removes one of them.
"""

from __future__ import annotations

from lightning.pytorch.core.optimizer import LightningOptimizer

# `LightningOptimizer.step` runs the optimiser's step between these two hooks, which the manual
# optimisation loop sets to count the step (that count is `trainer.global_step`). Around the step
# it goes through the strategy and the precision plugin, which call three hooks on every callback
# per step; at 50 optimiser steps per Lightning call that costs about 15% of a step on CPU
# (scripts/bench_step.py). With plain 32-bit precision on one device that plugin only calls the
# optimiser, so this fast path counts the step with the same two hooks around the raw step.
# Every other precision goes through `LightningOptimizer.step` (model/language_model.py).
BEFORE_STEP_HOOK = "_on_before_step"
AFTER_STEP_HOOK = "_on_after_step"


def counted_raw_step(optimizer: LightningOptimizer) -> None:
    """`optimizer.optimizer.step()`, counted as one optimiser step of the trainer."""
    getattr(optimizer, BEFORE_STEP_HOOK)()
    optimizer.optimizer.step()
    getattr(optimizer, AFTER_STEP_HOOK)()
