"""A tiny real sweep shared by the report, W&B and browser tests.

Three runs of the real CLI (a grid multirun over model.n_hidden with a few hundred steps),
then a real Optuna study in SQLite whose trials point at those run folders through the user
attribute `run_dir`, the convention the Optuna sweeper follows. Built once per test session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna
from conftest import train_cli, user_shell_env

STUDY_NAME = "tiny-report"
HIDDEN_SIZES = (16, 32, 64)
TINY_BUDGET = [
    "trainer.max_steps=200",
    "trainer.val_every_n_steps=50",
    "data.batch_size=64",
    "threads=1",
]


@dataclass(frozen=True)
class TinySweep:
    root: Path  # the working folder the CLI ran in
    multirun_dir: Path
    run_dirs: list[Path]
    storage_url: str
    study_name: str

    @property
    def best_value(self) -> float:
        study = optuna.load_study(study_name=self.study_name, storage=self.storage_url)
        return float(study.best_value)


_built: dict[Path, TinySweep] = {}


def sweep_env() -> dict[str, str]:
    return user_shell_env()


def build_tiny_sweep(base: Path, names_path: Path) -> TinySweep:
    """Run the sweep in BASE/tiny-sweep (once per session) and record it as an Optuna study."""
    if base in _built:
        return _built[base]
    root = base / "tiny-sweep"
    root.mkdir(parents=True, exist_ok=True)
    multirun_dir = root / "multirun" / "tiny"
    hidden = ",".join(str(h) for h in HIDDEN_SIZES)
    result = train_cli(
        [
            "-m",
            f"model.n_hidden={hidden}",
            *TINY_BUDGET,
            f"data.path={names_path}",
            f"hydra.sweep.dir={multirun_dir}",
        ],
        cwd=root,
        env=sweep_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = [multirun_dir / str(i) for i in range(len(HIDDEN_SIZES))]

    storage_url = f"sqlite:///{root / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage_url, direction="minimize")
    distribution = optuna.distributions.IntDistribution(min(HIDDEN_SIZES), max(HIDDEN_SIZES))
    for n_hidden, run_dir in zip(HIDDEN_SIZES, run_dirs, strict=True):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        study.add_trial(
            optuna.trial.create_trial(
                params={"model.n_hidden": n_hidden},
                distributions={"model.n_hidden": distribution},
                value=metrics["val_loss"],
                user_attrs={"run_dir": str(run_dir.resolve())},
            )
        )
    sweep = TinySweep(root, multirun_dir, run_dirs, storage_url, STUDY_NAME)
    _built[base] = sweep
    return sweep
