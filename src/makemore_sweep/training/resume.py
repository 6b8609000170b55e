"""Continuing a killed run in its own folder: `makemore-train resume=RUN_DIR`.

Every validation saves `checkpoints/last.ckpt` (atomically: Lightning writes a temporary file
and renames it). `resume=RUN_DIR` becomes the run's own overrides with `hydra.run.dir=RUN_DIR
ckpt_path=last` (resume_command.py), so the configuration, the output folder, the optimiser,
monitor and random state and the W&B run id all carry on. The learning-rate plan stays the one
the run started with (`check_resumed_plan`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins import TorchCheckpointIO

from makemore_sweep.data.batches import StepPlan
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT
from makemore_sweep.model.checkpoints import SCHEDULE_STEPS_KEY, load_checkpoint
from makemore_sweep.model.language_model import LanguageModelTask


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from, read once: its path and what it holds."""

    path: Path
    checkpoint: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> ResumePoint:
        """Loaded weights-only: a damaged or code-carrying file is refused with one sentence."""
        return cls(path, load_checkpoint(path))


class ResumeCheckpointIO(TorchCheckpointIO):
    """Lightning's own checkpoint IO, except that the checkpoint the run resumes from, already
    read and checked (`ResumePoint`), is handed to Lightning instead of being read again."""

    def __init__(self, resume: ResumePoint) -> None:
        super().__init__()
        self._resume: ResumePoint | None = resume

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable[..., Any] | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        resume = self._resume
        if resume is not None and os.path.abspath(path) == os.path.abspath(resume.path):
            self._resume = None  # once: a later load of the same path reads the file as it is then
            return resume.checkpoint
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


def checkpoint_to_resume(ckpt_path: str | None, run_dir: Path) -> ResumePoint | None:
    """The checkpoint named by `ckpt_path` (null, `last` or a file), checked before any training.

    Lightning's own `ckpt_path="last"` silently starts from scratch when there is no last
    checkpoint; here that is an error. The file is read here, once, weights-only
    (`ResumePoint`): the plan check and Lightning's restore take what was read.
    """
    if ckpt_path is None:
        return None
    path = run_dir / LAST_CHECKPOINT if ckpt_path == "last" else Path(ckpt_path).expanduser()
    if not path.is_file():
        if ckpt_path == "last":
            raise ConfigError(
                f"ckpt_path=last: {run_dir} has no {LAST_CHECKPOINT}; continue a run in its own folder "
                "with makemore-train resume=RUN_DIR."
            )
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file.")
    return ResumePoint.read(path)


def check_resumed_plan(resume: ResumePoint, module: LanguageModelTask, plan: StepPlan) -> None:
    """Refuse a resumed run whose new length cannot follow the learning-rate plan it started with.

    The schedule stays laid out over the run's original number of steps (the module restores it
    from the checkpoint); steps beyond it run at the schedule's final rate. A run cannot be cut
    below the steps it has done, nor extended when its schedule ends at a rate of 0.
    """
    checkpoint, checkpoint_path = resume.checkpoint, resume.path
    done = int(checkpoint.get("global_step", 0))
    planned = int(
        checkpoint.get(
            SCHEDULE_STEPS_KEY,
            checkpoint.get("hyper_parameters", {}).get("max_steps", plan.max_steps),
        )
    )
    if plan.max_steps < done:
        raise ConfigError(
            f"The run in {checkpoint_path.parents[1]} has already done {done} steps, more than the {plan.max_steps} "
            "now asked for (trainer.max_steps or trainer.max_epochs); resume it with at least as many."
        )
    module.max_steps = planned
    if plan.max_steps > planned and module.lr_at(planned) <= 0.0:
        raise ConfigError(
            f"The run in {checkpoint_path.parents[1]} was planned for {planned} steps and its "
            f"{module.optim_spec.schedule} learning-rate schedule ends at a rate of 0, so the steps beyond "
            f"{planned} up to {plan.max_steps} would not train; resume it without changing its length, or start "
            f"a new run with trainer.max_steps={plan.max_steps}."
        )


def previous_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run last written in `run_dir`, so a resumed run continues it."""
    records = sorted(
        (run_dir / "wandb").glob("*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime
    )
    return records[-1].stem.removeprefix("run-") if records else None
