"""Compose a run's configuration in-process exactly as `makemore-train` does (notebook API).

Same primary config (`pkg://makemore_sweep.conf`, train.yaml), same search path (the user's
./configs first, added by the same search-path plugin), same override preparation
(`resume=RUN_DIR`, `sweep=NAME`), through Hydra's public compose API.

A relative `data.path` means what it means to the command line: relative to the folder the
command runs in (Hydra never changes the working directory here: hydra.job.chdir is false). For
the notebook API that folder is the caller's working directory at the call, so the path is made
absolute then, before any run, sweep process or worker starts: what the run records and what
its errors name is the file it read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from makemore_sweep.cli.train import prepare_overrides
from makemore_sweep.config.command_line import check_command_line
from makemore_sweep.config.locations import CONFIG_PACKAGE, PRIMARY_CONFIG
from makemore_sweep.config.network_spec import force_model_keys

JOB_NAME = "train"  # hydra.job.name of makemore-train (its module is cli/train.py)
DATA_PATH = "data.path"
DATA_PATH_OVERRIDE = re.compile(r"\+{0,2}data\.path=.*")  # data.path=, +data.path=, ++data.path=


def compose_config(overrides: Sequence[str]) -> tuple[DictConfig, list[str]]:
    """The configuration with its `hydra` node, and the overrides as Hydra saw them.

    Hydra allows one initialisation per process at a time: an earlier one (a previous call, or
    the user's own hydra.initialize()) is cleared first, and ours is undone once composed.
    """
    args = prepare_overrides(list(overrides))
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    check_command_line(args)  # the CLI's one-sentence refusals of bad keys and values
    args = force_model_keys(args)  # as makemore-train passes them to Hydra (cli/train.py)
    config = _compose(args)
    data_path = OmegaConf.select(config, DATA_PATH)
    if isinstance(data_path, str) and not Path(data_path).expanduser().is_absolute():
        # Composed again with the absolute path in place of the relative one (or the default), so
        # that the config and the recorded overrides (what resume= replays) agree on it.
        args = [
            *(a for a in args if not DATA_PATH_OVERRIDE.fullmatch(a)),
            path_override(DATA_PATH, Path(os.path.abspath(data_path))),
        ]
        config = _compose(args)
    return config, args


def _compose(args: list[str]) -> DictConfig:
    with initialize_config_module(config_module=CONFIG_PACKAGE, job_name=JOB_NAME):
        return compose(config_name=PRIMARY_CONFIG, overrides=args, return_hydra_config=True)


def path_override(key: str, path: Path) -> str:
    """`key=PATH` as a Hydra override, quoted when the path has characters the grammar reserves."""
    text = str(path)
    if not re.fullmatch(r"[\w./:@+-]+", text):
        text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"
