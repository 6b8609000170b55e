"""makemore-sweep: experiment-tracking hyperparameter sweeps for the makemore BatchNorm MLP."""

import time as _time

__version__ = "0.1.0"

# Taken before torch, Lightning or Hydra are imported: start-up is measured from here
# to the first optimiser step (see monitor.RunMonitor).
IMPORTED_AT = _time.perf_counter()
