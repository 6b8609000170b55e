"""makemore-sweep: experiment-tracking hyperparameter sweeps for the makemore BatchNorm MLP."""

import time as _time

__version__ = "0.1.0"

# Where the start-up of the current run began (see monitor.RunMonitor, which measures up to
# the first optimiser step): the package import, before torch, Lightning or Hydra are loaded,
# for a process's first run; the entry of the task function for later runs of an in-process
# multirun, whose imports are already done (see train.train).
STARTUP_CLOCK = _time.perf_counter()
