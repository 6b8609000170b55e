"""`makemore-train`: the Hydra application over conf/train.yaml (one run, or -m for multirun)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from makemore_sweep.errors import UserError, debug_enabled, report_user_error
from makemore_sweep.paths import CONF_DIR
from makemore_sweep.runner import run_training


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train(cfg: DictConfig) -> float:
    """Train one configuration and return its best dev loss (what sweepers minimise)."""
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


def selects_sweep(args: list[str]) -> bool:
    """True when the command line picks a sweep file (`sweep=NAME`) without choosing a mode."""
    picks = any(re.fullmatch(r"\+{0,2}sweep=(?!null$).+", a) for a in args)
    chooses_mode = any(a in ("-m", "--multirun", "-r", "--run") or a.startswith("hydra.mode=") for a in args)
    return picks and not chooses_mode


def main() -> None:
    # Hydra 1.4 reads hydra.mode from the primary config or the command line only, so the
    # sweep file's `hydra.mode: MULTIRUN` alone cannot switch it: say it on its behalf.
    if selects_sweep(sys.argv[1:]):
        sys.argv.append("hydra.mode=MULTIRUN")
    train()


if __name__ == "__main__":
    main()
