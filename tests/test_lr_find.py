"""The learning-rate finder: its rate schedule, its suggestion, and `makemore-train task=lr_find`."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest
from conftest import train_cli
from run_files import PNG_MAGIC, wandb_records

from makemore_sweep.training.lr_finder import exponential_rates, smooth, suggest_rate


def test_rates_are_exponentially_spaced_between_the_bounds() -> None:
    rates = exponential_rates(1e-4, 10.0, 1000)
    assert len(rates) == 1000
    assert rates[0] == pytest.approx(1e-4) and rates[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in itertools.pairwise(rates)]
    assert max(ratios) == pytest.approx(
        min(ratios), rel=1e-9
    )  # constant ratio: even steps in log10
    assert ratios[0] == pytest.approx(10 ** (5 / 999))


def test_suggestion_is_the_bottom_of_the_smoothed_valley() -> None:
    """A noisy curve with its valley at 0.1: smoothing removes the noise, not the valley's place."""
    rates = exponential_rates(1e-4, 10.0, 500)
    curve = [2.3 + 0.2 * (math.log10(r) + 1) ** 2 for r in rates]
    noisy = [
        v + (0.3 if i % 2 else -0.3) for i, v in enumerate(curve)
    ]  # alternating noise ≫ the curve's slope
    smoothed = smooth(noisy, window=25)
    assert len(smoothed) == len(noisy)
    assert suggest_rate(rates, smoothed) == pytest.approx(0.1, rel=0.1)
    assert smooth([3.0] * 10, window=4) == pytest.approx([3.0] * 10)


@pytest.mark.slow
def test_lr_find_plots_logs_and_suggests_a_rate(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "lr"
    result = train_cli(
        [
            "task=lr_find",
            "task.num_steps=150",
            "data.batch_size=32",
            "optim=sgd",
            f"data.path={names_path}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    suggested = re.search(r"suggested rate: optim\.lr=([0-9.e+-]+)", result.stdout)
    assert suggested, result.stdout
    summary = json.loads((run_dir / "lr_find.json").read_text())
    assert float(suggested.group(1)) == pytest.approx(summary["suggested_lr"], rel=1e-2)
    assert 1e-4 <= summary["suggested_lr"] <= 10.0
    assert (run_dir / "lr_find.png").read_bytes().startswith(PNG_MAGIC)
    rows = (run_dir / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed_loss" and len(rows) == summary["steps_run"] + 1
    assert not (run_dir / "metrics.json").exists()  # not a training run: reports must not count it

    records = wandb_records(run_dir)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["job_type"] == "lr_find"
    logged = json.dumps([r for r in records if r["type"] == "summary"])
    assert "suggested_lr" in logged and "lr_find/loss" in logged and '"lr_find._type"' in logged


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        (["task.min_lr=1.0", "task.max_lr=0.1"], "task.min_lr=1.0"),
        (["task.num_steps=3"], "task.num_steps=3"),
        (["model=bigram"], "model=bigram"),
    ],
)
def test_lr_find_config_errors_are_one_sentence(
    tmp_path: Path, names_path: Path, run_env: dict[str, str], overrides: list[str], culprit: str
) -> None:
    result = train_cli(
        [
            "task=lr_find",
            *overrides,
            "logger=none",
            f"data.path={names_path}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"error: {culprit}" in result.stderr or culprit in result.stderr.splitlines()[-1]
