"""Where configuration is read from and where what the user makes is written.

Read: the configs shipped with the package (the package `makemore_sweep.conf`: the checkout's
top-level conf/ in an editable install, package data in the wheel), found by Hydra through
`pkg://makemore_sweep.conf`, plus the user config folder `./configs` under the folder the
command runs in, searched first (see search_path.UserConfigSearchPath).

Written: only under the folder the command runs in (outputs/, multirun/, studies/, and a
sweep's best trial in ./configs/experiment/), never inside the installed package.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_PACKAGE = "makemore_sweep.conf"
CONFIG_SOURCE = f"pkg://{CONFIG_PACKAGE}"  # Hydra's config_path for the shipped configs
PRIMARY_CONFIG = "train"
# The shipped configs as a folder on disk (for tools that read one YAML file directly).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
USER_CONFIG_FOLDER = "configs"


def user_config_dir() -> Path:
    """./configs: the user's own config groups, searched before the shipped ones."""
    return Path.cwd() / USER_CONFIG_FOLDER


def experiment_export_dir() -> Path:
    """./configs/experiment: where a sweep writes its best trial as `<study>_best.yaml`."""
    return user_config_dir() / "experiment"
