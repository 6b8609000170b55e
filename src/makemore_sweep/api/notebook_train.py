"""`makemore_sweep.train(overrides, output_dir)`: one run from Python, as `makemore-train` does it.

    from makemore_sweep import train
    metrics = train(["trainer.max_steps=300", "logger=csv"])   # the contents of metrics.json

The configuration is composed in-process (api.composition) and the run is the CLI's own job
(cli.train_job.run_task), so configs, validation, output folder and files are the same. What differs
from the command line: errors are raised as exceptions instead of ending the process, Python's
logging is left as the notebook has it, and the working directory never changes.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from makemore_sweep.api.composition import compose_config
from makemore_sweep.cli.train import silence_known_noise
from makemore_sweep.cli.train_job import run_task
from makemore_sweep.errors import ConfigError
from makemore_sweep.training.metrics_file import METRICS_FILE
from makemore_sweep.training.resume_command import RunFinished


def train(
    overrides: Sequence[str] = (), output_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Train one configuration and return the contents of its metrics.json.

    `overrides` are makemore-train's command-line overrides (`["model.n_hidden=300"]`,
    `["experiment=lecture"]`, `["resume=outputs/2026-01-01/12-00-00"]`); `output_dir` is the
    run's folder (default: Hydra's `outputs/DATE/TIME` under the working directory). Relative
    paths are relative to the working directory at the call, as for makemore-train run there:
    data.path (default data/names.txt) is made absolute before the run starts, and that is the
    path the run records and its errors name.
    A user error (bad override, missing names file, divergence) raises makemore_sweep.errors.UserError.
    """
    try:
        config, _ = compose_config(overrides)
    except RunFinished as finished:
        return finished.metrics  # resume= of a finished run: its results, nothing trained
    if config.hydra.mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"train() runs one configuration, but {' '.join(overrides)} asks for a multirun; "
            "run sweeps with makemore_sweep.sweep()."
        )
    run_dir = (
        Path(output_dir if output_dir is not None else config.hydra.run.dir).expanduser().resolve()
    )
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.run.dir = str(run_dir)
        config.hydra.runtime.output_dir = str(run_dir)
    quiet_once()
    with hydra_job(config) as task_config:
        run_task(task_config)
    return json.loads((run_dir / METRICS_FILE).read_text())


@functools.cache
def quiet_once() -> None:
    """makemore-train's filters for third-party chatter, added once per process (they pile up)."""
    silence_known_noise()


@contextmanager
def hydra_job(config: DictConfig) -> Iterator[DictConfig]:
    """What Hydra's run_job does around a job, as far as the run reads it.

    HydraConfig is set (for `${hydra:runtime.output_dir}` and the sweep's trial lookup), the
    output folder made with its .hydra/ files (config, hydra, overrides: what `resume=RUN_DIR`
    replays); yields the job's config without `hydra`. HydraConfig is put back afterwards, so
    the next call starts clean.
    """
    hydra_config = config.hydra
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    task_config = copy.deepcopy(config)
    with read_write(task_config), open_dict(task_config):
        del task_config["hydra"]
    run_dir = Path(hydra_config.runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if hydra_config.output_subdir is not None:
        saved = run_dir / str(hydra_config.output_subdir)
        saved.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(task_config, saved / "config.yaml")
        OmegaConf.save(OmegaConf.create({"hydra": hydra_config}), saved / "hydra.yaml")
        OmegaConf.save(hydra_config.overrides.task, saved / "overrides.yaml")
    try:
        yield task_config
    finally:
        HydraConfig.instance().cfg = previous
