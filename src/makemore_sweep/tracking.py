"""Experiment tracking: the loggers of a run (W&B offline by default, CSV curve) and what they get."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from makemore_sweep.instantiation import build as instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|api_key|token)", re.IGNORECASE)
URL_PASSWORD_PATTERN = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?P<tail>@)")


def mask_secrets(text: str) -> str:
    """Hide the password of any URL in `text` (`postgresql://u:pw@host` → `postgresql://u:***@host`)."""
    return URL_PASSWORD_PATTERN.sub(r"\g<head>***\g<tail>", text)


def hide_secrets_in_command_line() -> None:
    """Mask URL passwords in sys.argv, once Hydra has parsed it.

    W&B records the command line in every run's metadata and Lightning quotes it in warnings;
    a storage URL given as an override (hydra.sweeper.storage=postgresql://user:pw@host/db)
    would carry its password there.
    """
    sys.argv[:] = [mask_secrets(arg) for arg in sys.argv]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → flat dotted keys, lists kept as values, secrets masked.

    Flat keys make W&B's parallel-coordinates and scatter panels work without set-up.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{dotted}."))
        elif isinstance(value, str):
            flat[dotted] = "***" if SECRET_KEY_PATTERN.search(str(key)) else mask_secrets(value)
        else:
            flat[dotted] = value
    return flat


def build_loggers(logger_cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger of the `logger` group (none for logger=none)."""
    if not logger_cfg:
        return []
    loggers = []
    for name, spec in logger_cfg.items():
        if spec is None:
            continue
        if name == "wandb":
            os.environ.setdefault("WANDB_SILENT", "true")
            Path(spec.save_dir).mkdir(parents=True, exist_ok=True)
        loggers.append(instantiate(spec))
    return loggers


def log_run_config(
    loggers: list[Logger], config: DictConfig, extra: Mapping[str, Any] | None = None
) -> None:
    """The flat config (plus `extra`, e.g. the SLURM job) as every logger's hyperparameters."""
    flat = flatten_config(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    flat.update(flatten_config(extra or {}))
    for logger in loggers:
        logger.log_hyperparams(flat)


def keep_earlier_curves(loggers: list[Logger]) -> list[Path]:
    """Set aside the CSV curve a run wrote before it was resumed: metrics.before-resume-N.csv.

    Lightning's CSVLogger deletes an existing metrics.csv when it starts writing, so a run
    resumed in its own folder (a requeued SLURM job, `ckpt_path=last`) would lose the first
    part of its curve. Call before anything is logged. Returns the files set aside.
    """
    kept = []
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            curve = Path(logger.log_dir) / "metrics.csv"
            if curve.is_file():
                n = 1 + len(list(curve.parent.glob("metrics.before-resume-*.csv")))
                kept.append(curve.rename(curve.with_name(f"metrics.before-resume-{n}.csv")))
    return kept


def log_run_summary(loggers: list[Logger], metrics: Mapping[str, Any], step: int) -> None:
    """Final figures: scalars to every logger, samples as a W&B table and in its summary."""
    scalars = {
        f"final/{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for logger in loggers:
        logger.log_metrics(scalars, step=step)
        if isinstance(logger, WandbLogger):
            summary = {k: v for k, v in metrics.items() if not isinstance(v, list | dict)}
            logger.experiment.summary.update(summary)
            samples = metrics.get("samples") or []
            logger.log_table(key="samples", columns=["name"], data=[[s] for s in samples])
        logger.save()


def finish_loggers(loggers: list[Logger], status: str = "success") -> None:
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish(exit_code=0 if status == "success" else 1)


def csv_metrics_path(loggers: list[Logger]) -> str | None:
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            return str(Path(logger.log_dir) / "metrics.csv")
    return None
