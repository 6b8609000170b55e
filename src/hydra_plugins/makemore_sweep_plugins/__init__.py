"""Registers makemore-sweep's Hydra plugins: Hydra finds plugins by scanning `hydra_plugins.*`.

- `hydra/sweeper=makemore_optuna`: makemore_sweep.optuna_sweeper.MakemoreOptunaSweeper
- `hydra/launcher=local` (conf/hydra/launcher/local.yaml): makemore_sweep.local_launcher
"""

from makemore_sweep.local_launcher import ThreadSplittingLocalLauncher
from makemore_sweep.optuna_sweeper import MakemoreOptunaSweeper

__all__ = ["MakemoreOptunaSweeper", "ThreadSplittingLocalLauncher"]
