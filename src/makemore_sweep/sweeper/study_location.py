"""Where a sweep's study lives, worked out alike by the sweep process and by every trial's job.

On one machine: `hydra.sweeper.storage`, or an SQLite file `studies/<study>.db` when it is null.
When the launcher sends jobs to SLURM nodes: never SQLite (its locks do not hold across nodes),
so null means a journal file in the sweep folder and an SQLite URL is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_class

from makemore_sweep.sweeper.storage import cluster_storage_url, resolve_storage_url


def launcher_runs_on_cluster(launcher_config: Any) -> bool:
    """True when the configured launcher (`hydra.launcher`) sends jobs to SLURM."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    target = launcher_config.get("_target_") if launcher_config is not None else None
    try:
        launcher = get_class(str(target)) if target else None
    except Exception:  # noqa: BLE001 - a launcher we cannot import is not ours to judge
        return False
    return launcher is not None and (
        issubclass(launcher, SlurmLauncher) or getattr(launcher, "cluster", None) == "slurm"
    )


def study_storage_url(hydra_config: Any, study_name: str, base_dir: Path) -> str:
    """The absolute storage URL of the study, from Hydra's config node (`hydra`)."""
    storage = hydra_config.sweeper.get("storage")
    if launcher_runs_on_cluster(hydra_config.get("launcher")):
        return cluster_storage_url(storage, Path(str(hydra_config.sweep.dir)), base_dir)
    return resolve_storage_url(storage, study_name, base_dir)
