"""Experiment tracking: the loggers of a run (W&B offline by default, CSV curve) and what they get."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from makemore_sweep.config.instantiation import build as instantiate
from makemore_sweep.redaction import SECRET_KEY_PATTERN, mask_secrets


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
    """Lightning's WandbLogger with the W&B run started here, by `wandb.init`.

    Lightning's own start passes `anonymous=` to `wandb.init`, a setting wandb 0.31 deprecates
    and warns about on every run. Starting the run here and handing it to WandbLogger through
    its public `experiment` argument leaves it out; the step axis is the one Lightning defines.
    `init_args` are `wandb.init`'s (group, job_type, mode, ...).
    """

    def __init__(
        self, project: str, save_dir: str, id: str | None = None, **init_args: Any
    ) -> None:
        run = None
        # As Lightning does: other processes log nothing (it sets `rank` on the decorator).
        if getattr(rank_zero_only, "rank", 0) == 0:
            import wandb

            run = wandb.init(project=project, dir=save_dir, id=id, resume="allow", **init_args)
            run.define_metric("trainer/global_step")
            run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        super().__init__(project=project, save_dir=save_dir, id=id, experiment=run, **init_args)


def sweep_identity() -> tuple[str | None, str | None]:
    """(group, name) of a W&B run inside a Hydra multirun; (None, None) for a single run.

    The group is the Optuna study name when the sweeper has one, else the sweep folder, so all
    runs of one sweep land in one W&B group; the name adds the job number.
    """
    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, None
    group = OmegaConf.select(cast(DictConfig, hydra_cfg), "sweeper.study_name") or _shown_path(
        Path(hydra_cfg.sweep.dir), Path(hydra_cfg.runtime.cwd)
    )
    return str(group), f"{group}#{hydra_cfg.job.num}"


def _shown_path(path: Path, cwd: Path) -> str:
    """`path` relative to where the user ran the command when it lies below it."""
    absolute = path if path.is_absolute() else cwd / path
    try:
        return str(absolute.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(absolute)


def build_loggers(
    logger_cfg: DictConfig | None,
    wandb_id: str | None = None,
    resuming: bool = False,
    concurrent: bool = False,
) -> list[Logger]:
    """Instantiate every logger of the `logger` group (none for logger=none).

    `wandb_id` continues an earlier W&B run (a resumed training run) unless the config names one.
    When `resuming`, an earlier CSV curve is kept as metrics.partN.csv: Lightning's CSV logger
    deletes an existing metrics.csv when it starts. `concurrent` runs share this process with
    other open runs (the members of a packed network): W&B then starts a run of its own for each.
    """
    if not logger_cfg:
        return []
    loggers = []
    for name, spec in logger_cfg.items():
        if spec is None:
            continue
        extra: dict[str, Any] = {}
        if name == "wandb":
            os.environ.setdefault("WANDB_SILENT", "true")
            Path(spec.save_dir).mkdir(parents=True, exist_ok=True)
            if wandb_id and not spec.get("id"):
                extra["id"] = wandb_id
            group, run_name = sweep_identity()
            if spec.get("group") is None and group:
                extra["group"] = group
            if spec.get("name") is None and run_name:
                extra["name"] = run_name
            if concurrent:
                extra["reinit"] = "create_new"
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


def log_run_config(
    loggers: list[Logger], config: DictConfig, extra: Mapping[str, Any] | None = None
) -> None:
    """The flat config (plus `extra`, e.g. the SLURM job) as every logger's hyperparameters."""
    flat = flatten_config(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    flat.update(flatten_config(extra or {}))
    for logger in loggers:
        logger.log_hyperparams(flat)


def log_run_summary(
    loggers: list[Logger],
    metrics: Mapping[str, Any],
    step: int,
    images: Mapping[str, Path] | None = None,
) -> None:
    """Final figures: test loss on every curve; summary, samples table and `images` (PNGs) to W&B."""
    for logger in loggers:
        if metrics.get("test_loss") is not None:
            logger.log_metrics({"test_loss": float(metrics["test_loss"])}, step=step)
        if isinstance(logger, WandbLogger):
            summary = {k: v for k, v in metrics.items() if not isinstance(v, list | dict)}
            logger.experiment.summary.update(summary)
            samples = metrics.get("samples") or []
            logger.log_table(key="samples", columns=["name"], data=[[s] for s in samples])
            for key, path in (images or {}).items():
                logger.log_image(key=key, images=[str(path)])
        logger.save()


def finish_loggers(loggers: list[Logger], status: str = "success") -> None:
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            # This logger's own run: with packed members several runs are open in one process.
            logger.experiment.finish(exit_code=0 if status == "success" else 1)


def finish_leftover_wandb_run() -> None:
    """A trial that crashed mid-run may leave its W&B run open; the next trial must get its own."""
    wandb = sys.modules.get("wandb")  # never imported here: only a run that logged loaded it
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=1)
        except Exception as error:  # noqa: BLE001 - a clean-up: the trial's outcome must still be told
            warnings.warn(f"the W&B run left open could not be closed: {error}", stacklevel=2)
