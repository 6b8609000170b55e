"""`makemore-train`: the Hydra application over conf/train.yaml (one run, or -m for multirun)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from makemore_sweep.errors import UserError, debug_enabled, report_user_error
from makemore_sweep.paths import CONF_DIR
from makemore_sweep.runner import run_training
from makemore_sweep.tracking import hide_secrets_in_command_line


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train(cfg: DictConfig) -> float:
    """Train one configuration and return its best dev loss (what sweepers minimise)."""
    hide_secrets_in_command_line()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        metrics = run_training(cfg, run_dir)
    except UserError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN or debug_enabled():
            raise  # the sweeper records the trial as failed, with this message
        report_user_error(error)
        sys.exit(error.exit_code)
    return float(metrics["val_loss"])


def main() -> None:
    train()


if __name__ == "__main__":
    main()
