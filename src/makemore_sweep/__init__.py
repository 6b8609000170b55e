"""makemore-sweep: experiment-tracking hyperparameter sweeps for the makemore BatchNorm MLP.

For notebooks: `from makemore_sweep import train, sweep` (docs/notebook.ipynb). Both are
imported on first use, so `import makemore_sweep` stays light (no torch, Lightning or Hydra).
"""

from __future__ import annotations

import time as _time
from typing import Any

__version__ = "0.1.0"
__all__ = ["STARTUP_CLOCK", "__version__", "sweep", "train"]

# Where the start-up of the current run began (see monitor.RunMonitor, which measures up to
# the first optimiser step): the package import, before torch, Lightning or Hydra are loaded,
# for a process's first run; the entry of the task function for later runs of an in-process
# multirun, whose imports are already done (see train.train).
STARTUP_CLOCK = _time.perf_counter()


def __getattr__(name: str) -> Any:
    if name == "train":
        from makemore_sweep.api.notebook_train import train

        return train
    if name == "sweep":
        # The subpackage makemore_sweep.sweep, callable as the API's sweep() (see its __init__):
        # once any of its modules is imported, Python binds that name to the subpackage anyway.
        import makemore_sweep.sweep as sweep_package

        return sweep_package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
