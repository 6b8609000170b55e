"""A pruned run (a hook stopped it early) is recorded without evaluating its checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from makemore_sweep.config.conversion import load_run_config
from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.training.console_summary import print_summary
from makemore_sweep.training.metrics_file import CONTRACT_KEYS, read_metrics
from makemore_sweep.training.run import run_training
from makemore_sweep.training.run_hooks import RunHook


class StopAtFirstValidation(RunHook):
    """Like a sweep's pruner that gives up on the trial at its first validation."""

    def __init__(self) -> None:
        self.stopped_at: int | None = None

    @property
    def stopped_early(self) -> bool:
        return self.stopped_at is not None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped_at = trainer.global_step
        trainer.should_stop = True


def small_run(names_path: Path, run_dir: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(
            config_name="train",
            overrides=[
                f"data.path={names_path}",
                "trainer.max_steps=200",
                "trainer.val_every_n_steps=50",
                "logger=none",
                f"callbacks.checkpoint.dirpath={run_dir / 'checkpoints'}",
            ],
        )


def test_a_pruned_run_keeps_its_dev_loss_and_leaves_the_rest_null(
    names_path: Path, tmp_path: Path
) -> None:
    hook = StopAtFirstValidation()
    cfg = small_run(names_path, tmp_path)
    metrics = run_training(cfg, load_run_config(cfg), tmp_path, [hook])
    assert metrics == read_metrics(tmp_path)
    assert set(CONTRACT_KEYS) <= metrics.keys()
    assert metrics["state"] == "pruned" and metrics["steps"] == hook.stopped_at == 50
    (_, dev_loss), *_ = metrics["val_history"]
    assert metrics["val_loss"] == dev_loss and math.isfinite(dev_loss)
    for key in ("test_loss", "train_loss", "samples", "novel_fraction"):
        assert metrics[key] is None, key
    assert metrics["not_evaluated"].startswith("pruned at step 50")
    print_summary(metrics, tmp_path)  # the end-of-run table takes the nulls
