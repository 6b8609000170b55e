"""Registers makemore-sweep's Hydra plugins: Hydra finds plugins by scanning `hydra_plugins.*`.

- `hydra/sweeper=makemore_optuna`: makemore_optuna.MakemoreOptunaSweeper (this package: it imports the
  sweep, makemore_sweep.sweeper, which never imports it back), its keys makemore_sweep.config.sweep_settings
- `hydra/launcher=local` (conf/hydra/launcher/local.yaml): makemore_sweep.cluster.local_launcher
- `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): makemore_sweep.cluster.slurm_launcher
- the configuration schema `makemore_schema` that conf/train.yaml starts from (config/store.py),
  so that any composition of conf/ finds it, the compose API's included
- the user config folder ./configs on the search path: makemore_sweep.config.search_path
"""

import makemore_sweep.config.store  # noqa: F401  (registers the schema)
from hydra_plugins.makemore_sweep_plugins.makemore_optuna import MakemoreOptunaSweeper
from makemore_sweep.cluster.local_launcher import ThreadSplittingLocalLauncher
from makemore_sweep.cluster.slurm_launcher import CheckedSlurmLauncher
from makemore_sweep.config.search_path import UserConfigSearchPath

__all__ = [
    "CheckedSlurmLauncher",
    "MakemoreOptunaSweeper",
    "ThreadSplittingLocalLauncher",
    "UserConfigSearchPath",
]
