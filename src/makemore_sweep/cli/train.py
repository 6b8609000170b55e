"""`makemore-train`: the Hydra application over conf/train.yaml (one run, or -m for multirun)."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from makemore_sweep.config.command_line import check_command_line
from makemore_sweep.config.locations import CONFIG_SOURCE, PRIMARY_CONFIG
from makemore_sweep.config.network_spec import force_model_keys
from makemore_sweep.data.words import check_names_data
from makemore_sweep.errors import (
    UserError,
    debug_enabled,
    exit_cleanly_on_user_error,
    report_user_error,
)
from makemore_sweep.report.multirun_table import HYDRA_CALLBACK_TARGETS
from makemore_sweep.training.resume_command import RunFinished, expand_resume_argument

if TYPE_CHECKING:
    from makemore_sweep.cli.train_job import Objective
    from makemore_sweep.training.pack_member import MemberRun


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def silence_known_noise() -> None:
    """Hide advertising and third-party deprecation chatter that says nothing about the run."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    # Lightning hints at `srun` whenever SLURM is installed, even for a run on the login node.
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available")


# Hydra builds conf/train.yaml's `hydra.callbacks` itself; naming them here as allowed targets
# keeps its "no execution whitelist" warning off every run.
@hydra.main(
    config_path=CONFIG_SOURCE,
    config_name=PRIMARY_CONFIG,
    execution_whitelist=HYDRA_CALLBACK_TARGETS,
)
def train(cfg: DictConfig) -> Objective | MemberRun:
    """Train one configuration and return its best dev loss (what sweepers minimise), or the
    values of `hydra.sweeper.objectives` when it is a trial of a multi-objective sweep.

    With `task=lr_find` it runs the learning-rate finder instead and returns the suggested rate.
    """
    # Imported here, in the job: a sweep process, which only composes and launches, never pays
    # for the training stack (BENCHMARKS.md, issue 11).
    from makemore_sweep.cli.train_job import run_task

    try:
        return run_task(cfg)
    except UserError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN or debug_enabled():
            raise  # the sweeper records the trial as failed, with this message
        report_user_error(error)
        sys.exit(error.exit_code)


def selects_sweep(args: list[str]) -> bool:
    """True when the command line picks a sweep file (`sweep=NAME`) without choosing a mode."""
    picks = any(re.fullmatch(r"\+{0,2}sweep=(?!null$).+", a) for a in args)
    chooses_mode = any(
        a in ("-m", "--multirun", "-r", "--run") or a.startswith("hydra.mode=") for a in args
    )
    return picks and not chooses_mode


@exit_cleanly_on_user_error
def main() -> None:
    silence_known_noise()
    try:
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    except RunFinished as finished:
        print(finished, flush=True)  # resume= of a finished run: nothing to do, which is no error
        return
    # Hydra reports a value or key it refuses while composing in several lines of its own;
    # composing once here first turns that into one sentence naming the key.
    checked = check_command_line(sys.argv[1:])
    if checked is not None and checked.data_is_here:
        check_names_data(checked.run)  # in a second, not after the training stack's imports
    # A network's keys need not all be in its YAML: Hydra may add them, the schema checks them.
    sys.argv[1:] = force_model_keys(sys.argv[1:])
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
