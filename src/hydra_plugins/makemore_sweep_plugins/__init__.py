"""Registers makemore-sweep's Hydra plugins: Hydra finds plugins by scanning `hydra_plugins.*`.

- `hydra/sweeper=makemore_optuna`: makemore_sweep.sweep.plugin.MakemoreOptunaSweeper
- `hydra/launcher=local` (conf/hydra/launcher/local.yaml): makemore_sweep.cluster.local_launcher
- the user config folder ./configs on the search path: makemore_sweep.config.search_path
"""

from makemore_sweep.cluster.local_launcher import ThreadSplittingLocalLauncher
from makemore_sweep.config.search_path import UserConfigSearchPath
from makemore_sweep.sweep.plugin import MakemoreOptunaSweeper

__all__ = ["MakemoreOptunaSweeper", "ThreadSplittingLocalLauncher", "UserConfigSearchPath"]
