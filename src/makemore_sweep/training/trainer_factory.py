"""Building the Lightning Trainer from the `trainer` config group and the step plan."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins import CheckpointIO
from lightning.pytorch.plugins.environments import SLURMEnvironment

from makemore_sweep.config.instantiation import build as instantiate
from makemore_sweep.config.schema import TrainerConfig
from makemore_sweep.data.batches import StepPlan

# Keys of the `trainer` group that shape our loop rather than being Trainer arguments.
LOOP_KEYS = (
    "max_steps",
    "max_epochs",
    "val_every_n_steps",
    "steps_per_execution",
    "log_every_n_steps",
)


def plan_steps(trainer_cfg: TrainerConfig, n_train: int, batch_size: int) -> StepPlan:
    """`trainer.max_epochs` (passes over the training split), when set, overrides `max_steps`."""
    max_epochs = trainer_cfg.max_epochs
    if max_epochs is not None and max_epochs > 0:
        max_steps = max_epochs * -(-n_train // batch_size)
    else:
        # The schema refuses max_steps=null unless max_epochs is set.
        assert trainer_cfg.max_steps is not None
        max_steps = trainer_cfg.max_steps
    val_every = min(trainer_cfg.val_every_n_steps, max_steps)
    per_call = max(1, min(trainer_cfg.steps_per_execution, val_every))
    return StepPlan(max_steps=max_steps, val_every_n_steps=val_every, steps_per_execution=per_call)


def progress_bar_wanted() -> bool:
    """A live bar in a terminal; nothing in CI logs or when output goes to a file."""
    return sys.stdout.isatty() and not os.environ.get("CI")


def print_lightning_messages_once() -> None:
    """Let the logging configuration in force print Lightning's messages, once.

    lightning.pytorch and lightning.fabric leave their records to propagate to the root logger
    when it has handlers at their import (Hydra's job logging: the console and the job's
    train.log). The `lightning` package above them adds a stderr handler of its own at import
    whatever the root has, so under Hydra each message came out twice, on stderr and on stdout.
    With handlers on the root that handler is dropped; without (a plain script, a notebook
    kernel) it is left alone, and Lightning prints its messages itself, once.
    """
    if not logging.getLogger().handlers:
        return
    umbrella = logging.getLogger("lightning")
    for handler in list(umbrella.handlers):
        # Only a plain console handler, as Lightning adds: a user's file handler stays.
        if type(handler) is logging.StreamHandler:
            umbrella.removeHandler(handler)


def build_trainer(
    trainer_cfg: TrainerConfig,
    plan: StepPlan,
    loggers: list[Logger],
    callbacks: list[Callback],
    run_dir: Path,
    checkpoint_io: CheckpointIO | None = None,
) -> L.Trainer:
    print_lightning_messages_once()
    # `_target_` and the Trainer's own arguments; built by Hydra for its whitelist and its
    # one-sentence errors (trainer.accelerator=nosuch).
    lightning_args = {k: v for k, v in asdict(trainer_cfg).items() if k not in LOOP_KEYS}
    show_bar = progress_bar_wanted()
    if show_bar:
        callbacks = [*callbacks, RichProgressBar(leave=False)]
    extra: dict[str, Any] = {
        "max_steps": plan.max_steps,
        # One "epoch" of our loader is one validation interval; epochs are not passes here.
        "max_epochs": -1,
        "logger": loggers or False,
        "callbacks": callbacks,
        "default_root_dir": str(run_dir),
        "enable_progress_bar": show_bar,
        "num_sanity_val_steps": 0,
        "check_val_every_n_epoch": 1,
        # A new loader per interval, so that Lightning sizes the last, shorter interval
        # (max_epochs=1: 357 steps at 250 per interval) by its own length and validates and
        # checkpoints at its end too, instead of waiting for a full interval's batch count.
        "reload_dataloaders_every_n_epochs": 1,
        # Lightning counts its own steps, which are chunks of optimiser steps here.
        "log_every_n_steps": max(1, trainer_cfg.log_every_n_steps // plan.steps_per_execution),
    }
    plugins: list[Any] = []
    if SLURMEnvironment.detect():
        # submitit (hydra/launcher=slurm) requeues a job near its time limit or on preemption;
        # Lightning's own requeue handler would be a second one, so it is switched off.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    if checkpoint_io is not None:
        plugins.append(checkpoint_io)
    if plugins:
        extra["plugins"] = plugins
    trainer: L.Trainer = instantiate(lightning_args, **extra)
    return trainer
