"""The end of a grid multirun (`makemore-train -m`, Hydra's basic sweeper): a table of its jobs.

One real 2-job grid, run once for the module; its printed table is checked against the jobs'
metrics.json files.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import train_cli, user_shell_env
from omegaconf import OmegaConf

from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.report.multirun_table import HYDRA_CALLBACK_TARGETS

HIDDEN = (8, 32)
GRID = [
    "-m",
    f"model.n_hidden={','.join(map(str, HIDDEN))}",
    "trainer.max_steps=60",
    "trainer.val_every_n_steps=30",
    "logger=none",
]
FIT_STOPPED = "`Trainer.fit` stopped: `max_steps=60` reached."
ROW = re.compile(
    r"\[multirun\] (?P<mark>[* ]) (?P<job>\S+) +(?P<dev>\S+) +(?P<test>\S+) +(?P<time>\S+ s) +(?P<params>[\d,]+) +(?P<overrides>.+)"
)


@pytest.fixture(scope="module")
def grid(
    tmp_path_factory: pytest.TempPathFactory, names_path: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path_factory.mktemp("grid")
    result = train_cli([*GRID, f"data.path={names_path}"], cwd=root, env=user_shell_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result, root


@pytest.mark.slow
def test_a_grid_ends_with_its_jobs_by_dev_loss_best_marked(
    grid: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, root = grid
    [sweep_dir] = (root / "multirun").glob("*/*")
    shown = str(sweep_dir.relative_to(root))
    table = [line for line in result.stdout.splitlines() if line.startswith("[multirun]")]
    assert table[0] == f"[multirun] 2 jobs in {shown}, best dev loss first (*: the best):"
    assert table[1].split() == [
        "[multirun]",
        "job",
        "dev",
        "loss",
        "test",
        "loss",
        "train",
        "time",
        "params",
        "overrides",
    ]
    rows = [ROW.fullmatch(line) for line in table[2:4]]
    assert all(rows), table

    metrics = {
        job: json.loads((sweep_dir / job / "metrics.json").read_text()) for job in ("0", "1")
    }
    by_dev = sorted(metrics, key=lambda job: metrics[job]["val_loss"])
    assert [row["job"] for row in rows] == by_dev  # type: ignore[index]
    for row in rows:
        assert row is not None
        m = metrics[row["job"]]
        assert row["dev"] == f"{m['val_loss']:.4f}" and row["test"] == f"{m['test_loss']:.4f}"
        assert row["params"] == f"{m['n_params']:,}" and row["time"] == f"{m['train_time_s']:.1f} s"
        assert (
            row["overrides"] == f"model.n_hidden={HIDDEN[int(row['job'])]}"
        )  # what differs between the jobs
    assert [row["mark"] for row in rows] == ["*", " "]  # type: ignore[index]
    best = metrics[by_dev[0]]["val_loss"]
    assert table[4] == (
        f"[multirun] best: job {by_dev[0]}, dev {best:.4f}, in {shown}/{by_dev[0]}; compare them: makemore-report {shown}"
    )
    assert len(table) == 5 and result.stdout.rstrip().endswith(table[-1])  # the last thing printed


@pytest.mark.slow
def test_each_jobs_lightning_lines_are_printed_once(
    grid: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, root = grid
    assert (result.stdout + result.stderr).count(FIT_STOPPED) == len(HIDDEN)
    for log in (root / "multirun").glob("*/*/*/train.log"):
        assert log.read_text().count(FIT_STOPPED) == 1


def test_the_registered_callback_is_the_one_makemore_train_trusts() -> None:
    callbacks = OmegaConf.load(CONF_DIR / "train.yaml").hydra.callbacks
    assert [c._target_ for c in callbacks.values()] == HYDRA_CALLBACK_TARGETS


@pytest.mark.slow
def test_registering_the_table_warns_about_nothing(
    grid: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Hydra 1.4 warns about every config-built object without an execution whitelist: the
    callback's target must be whitelisted by makemore-train (cli/train.py's @hydra.main)."""
    result, _ = grid
    assert "Warning" not in result.stderr, result.stderr


@pytest.mark.slow
def test_an_optuna_sweep_prints_no_table(tmp_path: Path, names_path: Path) -> None:
    """The makemore_optuna sweeper prints its own summary; the grid's table is not added to it."""
    args = [
        "sweep=beat_2p2",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.workers=0",
        "trainer.max_steps=30",
        "logger=none",
    ]
    result = train_cli([*args, f"data.path={names_path}"], cwd=tmp_path, env=user_shell_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[sweep] best trial 0" in result.stdout
    assert "[multirun]" not in result.stdout + result.stderr
