"""Learning-rate schedules as plain functions of the optimiser step.

The module sets the rate itself before each step (no LR scheduler object), so the same
formula drives training, logging and the benchmarks.
"""

from __future__ import annotations

import math

from makemore_sweep.config.schema import SCHEDULE_NAMES


def learning_rate(
    schedule: str,
    step: int,
    total_steps: int,
    base_lr: float,
    warmup_frac: float = 0.0,
    final_lr_frac: float = 0.0,
    decay_at_frac: float = 0.5,
    decay_factor: float = 0.1,
) -> float:
    """Rate for 0-based `step` of `total_steps`.

    - constant: `base_lr` throughout.
    - step: the lectures' schedule, `base_lr` then `base_lr*decay_factor` from `decay_at_frac`.
    - onecycle: linear warm-up from base_lr/25 for `warmup_frac`, then cosine down to
      `base_lr*final_lr_frac` (the shape of torch's OneCycleLR).
    - cosine: linear warm-up from 0 for `warmup_frac`, then cosine to `base_lr*final_lr_frac`.
    """
    total_steps = max(total_steps, 1)
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr if step < decay_at_frac * total_steps else base_lr * decay_factor
    if schedule not in ("onecycle", "cosine"):
        raise ValueError(
            f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULE_NAMES)}"
        )
    warmup = int(warmup_frac * total_steps)
    start = base_lr / 25.0 if schedule == "onecycle" else 0.0
    if step < warmup:
        return start + (base_lr - start) * (step + 1) / warmup
    progress = (step - warmup) / max(total_steps - warmup, 1)
    final = base_lr * final_lr_frac
    return final + (base_lr - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
