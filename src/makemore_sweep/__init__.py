"""makemore-sweep: experiment-tracking hyperparameter sweeps for the makemore BatchNorm MLP.

For notebooks: `from makemore_sweep import train, sweep` (docs/notebook.ipynb). Their
implementations are imported on first call, so `import makemore_sweep` stays light (no torch,
Lightning or Hydra).
"""

from __future__ import annotations

import os
import time as _time
from collections.abc import Sequence
from typing import Any

__version__ = "0.1.0"
__all__ = ["STARTUP_CLOCK", "__version__", "sweep", "train"]

# Where the start-up of the current run began (see monitor.RunMonitor, which measures up to
# the first optimiser step): the package import, before torch, Lightning or Hydra are loaded,
# for a process's first run; the entry of the task function for later runs of an in-process
# multirun, whose imports are already done (see train.train).
STARTUP_CLOCK = _time.perf_counter()


def train(
    overrides: Sequence[str] = (), output_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Train one configuration, composed as `makemore-train OVERRIDES` composes it; return its metrics.json.

    `output_dir` is the run's folder (default: Hydra's outputs/DATE/TIME under the working
    directory). A user error (bad override, missing names file, divergence) raises
    makemore_sweep.errors.UserError. See makemore_sweep.api.notebook_train.
    """
    from makemore_sweep.api.notebook_train import train as train_in_process

    return train_in_process(overrides, output_dir)


def sweep(
    name: str, overrides: Sequence[str] = (), output_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Run the sweep `sweeps/<name>.yaml` (or resume its study) and return the study's summary.

    The summary holds study_name, storage, sweep_dir, best, experiment, experiment_file and
    trials. See makemore_sweep.api.notebook_sweep.
    """
    from makemore_sweep.api.notebook_sweep import sweep as sweep_in_child_process

    return sweep_in_child_process(name, overrides, output_dir)
