"""Experiment tracking: the loggers of a run (W&B offline by default, CSV curve) and what they get."""

from __future__ import annotations

import os
import re
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


class WandbRunLogger(WandbLogger):
    """Lightning's WandbLogger minus the `anonymous` init key, which wandb 0.31 warns about on every run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wandb_init.pop("anonymous", None)


def build_loggers(logger_cfg: DictConfig | None, wandb_id: str | None = None, resuming: bool = False) -> list[Logger]:
    """Instantiate every logger of the `logger` group (none for logger=none).

    `wandb_id` continues an earlier W&B run (a resumed training run) unless the config names one.
    When `resuming`, an earlier CSV curve is kept as metrics.partN.csv: Lightning's CSV logger
    deletes an existing metrics.csv when it starts.
    """
    if not logger_cfg:
        return []
    loggers = []
    for name, spec in logger_cfg.items():
        if spec is None:
            continue
        extra = {}
        if name == "wandb":
            os.environ.setdefault("WANDB_SILENT", "true")
            Path(spec.save_dir).mkdir(parents=True, exist_ok=True)
            if wandb_id and not spec.get("id"):
                extra["id"] = wandb_id
        logger = instantiate(spec, **extra)
        if resuming and isinstance(logger, CSVLogger):
            keep_earlier_csv(Path(logger.log_dir))
        loggers.append(logger)
    return loggers


def keep_earlier_csv(log_dir: Path) -> Path | None:
    """Rename log_dir/metrics.csv to the first free metrics.partN.csv, before a logger overwrites it."""
    current = log_dir / "metrics.csv"
    if not current.is_file():
        return None
    part = 1
    while (kept := log_dir / f"metrics.part{part}.csv").exists():
        part += 1
    current.rename(kept)
    return kept


def log_run_config(loggers: list[Logger], config: DictConfig) -> None:
    flat = flatten_config(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    for logger in loggers:
        logger.log_hyperparams(flat)


def log_run_summary(loggers: list[Logger], metrics: Mapping[str, Any], step: int) -> None:
    """Final figures: test loss on every curve, metrics.json as the W&B summary, samples as a table."""
    for logger in loggers:
        if metrics.get("test_loss") is not None:
            logger.log_metrics({"test_loss": float(metrics["test_loss"])}, step=step)
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
