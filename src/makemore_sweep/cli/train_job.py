"""The job of makemore-train: one training run (or the learning-rate finder), as a Hydra task.

cli/train.py imports this module only when a job runs, so a sweep process that only composes
and launches never loads the training stack (torch, Lightning, matplotlib: seconds of start-up
on every sweep, and the same again when it exits).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import makemore_sweep
from makemore_sweep.config.conversion import load_run_config
from makemore_sweep.redaction import hide_secrets_in_command_line, redact_run_records
from makemore_sweep.report.embeddings import plot_run_embeddings
from makemore_sweep.sweeper.trial_hook import TrialReporter
from makemore_sweep.training.lr_finder import run_lr_find
from makemore_sweep.training.pack_member import MemberRun
from makemore_sweep.training.run import run_training
from makemore_sweep.training.run_hooks import RunHook

_runs_in_this_process = 0
# A run returns its dev loss; a trial of a multi-objective sweep, each objective (None if missing).
Objective = float | list[float | None]


class EmbeddingFigure(RunHook):
    """The lecture's 2-D character-embedding plot of the best checkpoint, for the W&B summary.

    In a sweep, only a trial that improves on its study's best value draws it: drawing takes
    about 0.15 s, a fifth of what a trial spends outside training (BENCHMARKS.md), and the
    figures worth a look are those of the improving trials (the report draws the best one's).
    """

    def __init__(self, trial: TrialReporter | None = None) -> None:
        self.trial = trial

    def images(self, run_dir: Path, metrics: dict[str, Any]) -> dict[str, Path]:
        if self.trial is not None and not self.trial.improves_on_study(metrics):
            return {}
        png = plot_run_embeddings(run_dir)
        return {"embeddings": png} if png else {}


def run_hooks(cfg: DictConfig) -> list[RunHook]:
    """What a run of makemore-train gets from outside training: its sweep trial, if any, and figures."""
    trial = TrialReporter.from_config(cfg)  # None unless the run is a trial of an Optuna sweep
    return [EmbeddingFigure(trial), *([trial] if trial is not None else [])]


def run_task(cfg: DictConfig) -> Objective | MemberRun:
    """The job of makemore-train and of makemore_sweep.train(): Hydra's config must be set.

    Returns the best dev loss (or a sweep trial's objectives), or the suggested rate for
    `task=lr_find`, or a packed trial's started run (`optuna_trial.packed`); user errors are
    raised.
    """
    global _runs_in_this_process
    if _runs_in_this_process:  # a later job of an in-process multirun: its imports are done
        makemore_sweep.STARTUP_CLOCK = time.perf_counter()
    _runs_in_this_process += 1
    hide_secrets_in_command_line()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    redact_run_records(
        run_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None,
        Path(hydra_cfg.sweep.dir) if multirun else None,
    )
    # The one check of the run's configuration; below, training reads the typed `run`.
    run = load_run_config(cfg)
    if run.task is not None and run.task.name == "lr_find":
        return run_lr_find(cfg, run, run_dir).suggested_lr
    hooks = run_hooks(cfg)
    trial = next((hook for hook in hooks if isinstance(hook, TrialReporter)), None)
    if trial is not None and run.optuna_trial.packed:
        # A packed worker's trial: its run starts here, and the worker's pack trains it with
        # others and records its end (training/pack_engine.py, sweeper/packed_worker.py).
        return MemberRun.start(cfg, run, run_dir, hooks, trial.returned_values)
    metrics = run_training(cfg, run, run_dir, hooks)
    return float(metrics["val_loss"]) if trial is None else trial.returned_values(metrics)
