"""Checking makemore-train's command line against the schema before `@hydra.main` takes over.

Hydra composes the configuration before our task function runs, and reports what it refuses
there in its own words: several lines, no key path. So the entry point composes conf/train.yaml
with the same overrides first, through Hydra's public compose API, and turns a refusal into the
one sentence of a `ConfigError`: `model.n_hidden=abc is invalid: it must be an integer ≥ 1.`,
`model.n_hiden is not a configuration key; did you mean model.n_hidden?` (with or without `+`).
A sweep (`model.n_hidden=100,200`) is checked with its first value, an interval sweep and
`hydra.*` settings (but `hydra.searchpath`) not at all (each job of a multirun checks its own values when it starts); anything else Hydra refuses (an unknown
group option, bad override syntax) is left to Hydra, which names it well enough.
"""

from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import OmegaConfBaseException

import makemore_sweep.config.store  # noqa: F401  (registers the schema)
from makemore_sweep.compat.hydra import parse_hydra_command_line
from makemore_sweep.config.conversion import config_error, load_run_config
from makemore_sweep.config.locations import CONFIG_PACKAGE, PRIMARY_CONFIG

# Flags after which Hydra does not run the task (help, --cfg, --info...) or reads another config.
NOT_A_PLAIN_RUN = (
    "help", "hydra_help", "cfg", "info", "shell_completion", "config_path", "config_name", "config_dir",
    "experimental_rerun", "package",
)  # fmt: skip


def check_command_line(args: list[str]) -> None:
    """Raise ConfigError when the command line's overrides give an invalid configuration."""
    parsed = parse_hydra_command_line(args)
    if parsed is None or any(getattr(parsed, flag, None) for flag in NOT_A_PLAIN_RUN):
        return
    overrides = plain_overrides(parsed.overrides)
    if overrides is None:
        return
    try:
        # The same config module and search path (the user's ./configs first) as makemore-train.
        with initialize_config_module(config_module=CONFIG_PACKAGE, job_name="train"):
            cfg = compose(config_name=PRIMARY_CONFIG, overrides=overrides)
    except ConfigCompositionException as error:
        refusal = omegaconf_refusal(error)
        if refusal is not None:
            raise config_error(refusal) from None
        return
    except (HydraException, OmegaConfBaseException):
        return  # Hydra reports these itself when it composes again
    load_run_config(cfg)


def plain_overrides(overrides: list[str]) -> list[str] | None:
    """The overrides of the task's config, a sweep's list or range by its first value (that
    checks the key); None when Hydra cannot parse them."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return None
    plain = []
    for override in parsed:
        if override.input_line is None:
            continue
        if override.key_or_group.split("/")[0].split(".")[0] == "hydra":
            if override.key_or_group == "hydra.searchpath":  # where experiment files may be
                plain.append(override.input_line)
            continue
        if not override.is_sweep_override():
            plain.append(override.input_line)
            continue
        try:  # choice and range sweeps can be listed; intervals and globs cannot
            first = next(iter(override.sweep_string_iterator()))
        except (HydraException, StopIteration):
            continue
        plain.append(f"{override.get_key_element()}={first}")
    return plain


def omegaconf_refusal(error: BaseException) -> OmegaConfBaseException | None:
    """What OmegaConf refused under Hydra's composition error: an override (its cause) or a
    config file merged into a typed node (the error being handled when Hydra raised)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OmegaConfBaseException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
