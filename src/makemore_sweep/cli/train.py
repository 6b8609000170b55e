"""`makemore-train`: the Hydra application over conf/train.yaml (one run, or -m for multirun)."""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import makemore_sweep
from makemore_sweep.config.command_line import check_command_line
from makemore_sweep.config.locations import CONFIG_SOURCE, PRIMARY_CONFIG
from makemore_sweep.errors import (
    UserError,
    debug_enabled,
    exit_cleanly_on_user_error,
    report_user_error,
)
from makemore_sweep.redaction import hide_secrets_in_command_line, redact_run_records
from makemore_sweep.report.embeddings import plot_run_embeddings
from makemore_sweep.sweeper.trial_reporting import TrialReporter
from makemore_sweep.training.lr_finder import run_lr_find
from makemore_sweep.training.resume import expand_resume_argument
from makemore_sweep.training.run import run_training
from makemore_sweep.training.run_hooks import RunHook


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def silence_known_noise() -> None:
    """Hide advertising and third-party deprecation chatter that says nothing about the run."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    # Lightning hints at `srun` whenever SLURM is installed, even for a run on the login node.
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available")


_runs_in_this_process = 0
# A run returns its dev loss; a trial of a multi-objective sweep, each objective (None if missing).
Objective = float | list[float | None]


class EmbeddingFigure(RunHook):
    """The lecture's 2-D character-embedding plot of the best checkpoint, for the W&B summary."""

    def images(self, run_dir: Path) -> dict[str, Path]:
        png = plot_run_embeddings(run_dir)
        return {"embeddings": png} if png else {}


def run_hooks(cfg: DictConfig) -> list[RunHook]:
    """What a run of makemore-train gets from outside training: its sweep trial, if any, and figures."""
    trial = TrialReporter.from_config(cfg)  # None unless the run is a trial of an Optuna sweep
    return [EmbeddingFigure(), *([trial] if trial is not None else [])]


@hydra.main(config_path=CONFIG_SOURCE, config_name=PRIMARY_CONFIG)
def train(cfg: DictConfig) -> Objective:
    """Train one configuration and return its best dev loss (what sweepers minimise), or the
    values of `hydra.sweeper.objectives` when it is a trial of a multi-objective sweep.

    With `task=lr_find` it runs the learning-rate finder instead and returns the suggested rate.
    """
    try:
        return run_task(cfg)
    except UserError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN or debug_enabled():
            raise  # the sweeper records the trial as failed, with this message
        report_user_error(error)
        sys.exit(error.exit_code)


def run_task(cfg: DictConfig) -> Objective:
    """The job of makemore-train and of makemore_sweep.train(): Hydra's config must be set.

    Returns the best dev loss (or a sweep trial's objectives), or the suggested rate for
    `task=lr_find`; user errors are raised.
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
    if cfg.get("task") and cfg.task.name == "lr_find":
        return run_lr_find(cfg, run_dir).suggested_lr
    hooks = run_hooks(cfg)
    metrics = run_training(cfg, run_dir, hooks)
    trial = next((hook for hook in hooks if isinstance(hook, TrialReporter)), None)
    return float(metrics["val_loss"]) if trial is None else trial.objective_values(metrics)


def selects_sweep(args: list[str]) -> bool:
    """True when the command line picks a sweep file (`sweep=NAME`) without choosing a mode."""
    picks = any(re.fullmatch(r"\+{0,2}sweep=(?!null$).+", a) for a in args)
    chooses_mode = any(a in ("-m", "--multirun", "-r", "--run") or a.startswith("hydra.mode=") for a in args)
    return picks and not chooses_mode


@exit_cleanly_on_user_error
def main() -> None:
    silence_known_noise()
    sys.argv[1:] = prepare_overrides(sys.argv[1:])
    # Hydra reports a value or key it refuses while composing in several lines of its own;
    # composing once here first turns that into one sentence naming the key.
    check_command_line(sys.argv[1:])
    train()


def prepare_overrides(args: list[str]) -> list[str]:
    """The command line as Hydra should see it; makemore_sweep.train() and sweep() share it."""
    # `resume=RUN_DIR` is ours, not a config key: it becomes the overrides that continue that run.
    args = expand_resume_argument(args)
    # Hydra 1.4 reads hydra.mode from the primary config or the command line only, so the
    # sweep file's `hydra.mode: MULTIRUN` alone cannot switch it: say it on its behalf.
    if selects_sweep(args):
        args = [*args, "hydra.mode=MULTIRUN"]
    return args


if __name__ == "__main__":
    main()
