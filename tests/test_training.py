"""Training end to end on the real names.txt, through the real CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import train_cli

from makemore_sweep.training.metrics_file import CONTRACT_KEYS

FAST = ["trainer.max_steps=300", "trainer.val_every_n_steps=100", "logger=csv"]


def only_run_dir(root: Path) -> Path:
    runs = [p.parent for p in root.glob("outputs/*/*/metrics.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_short_training_lowers_the_loss(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli([f"data.path={names_path}", *FAST], tmp_path, run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    history = [v for _, v in metrics["val_history"]]
    assert len(history) == 3
    assert history[-1] < history[0] < metrics["init_loss"]
    assert metrics["steps"] == 300
    assert metrics["val_loss"] == pytest.approx(min(history), abs=1e-5)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, names_path: Path) -> Path:
    """The default `makemore-train` with W&B offline, as a newcomer runs it."""
    import os

    cwd = tmp_path_factory.mktemp("default")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    result = train_cli([f"data.path={names_path}"], cwd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dev loss" in result.stdout
    return only_run_dir(cwd)


@pytest.mark.slow  # a full default training run (minutes): not in make test-fast
def test_default_run_beats_2p2_and_writes_every_contract_key(default_run: Path) -> None:
    metrics = json.loads((default_run / "metrics.json").read_text())
    assert set(CONTRACT_KEYS) <= metrics.keys()
    assert metrics["val_loss"] < 2.2
    assert metrics["test_loss"] < 2.25
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (182_625, 22_655, 22_866)
    assert abs(metrics["init_loss"] - math.log(27)) < 0.05
    assert (
        metrics["time_to_target_s"] is not None
        and metrics["time_to_target_s"] <= metrics["train_time_s"]
    )
    assert len(metrics["samples"]) == 20 and 0.0 <= metrics["novel_fraction"] <= 1.0
    assert metrics["state"] == "completed"
    assert (default_run / ".hydra" / "config.yaml").is_file()
    assert (default_run / "csv" / "metrics.csv").is_file()


@pytest.mark.slow  # a full default training run (minutes): not in make test-fast
def test_offline_wandb_run_reads_back_with_the_dev_loss(default_run: Path) -> None:
    run = next((default_run / "wandb").glob("offline-run-*"))
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    metrics = json.loads((default_run / "metrics.json").read_text())
    assert record["summary"]["val_loss"] == pytest.approx(metrics["val_loss"])
    assert record["config"]["model.n_hidden"] == 200  # flat dotted keys
    assert record["state"] == "finished"


@pytest.mark.slow  # a full default training run (minutes): not in make test-fast
def test_best_checkpoint_loads_weights_only(default_run: Path) -> None:
    checkpoint = torch.load(default_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["vocab"][0] == "."


@pytest.mark.slow  # a full default training run (minutes): not in make test-fast
def test_sample_command_prints_names(default_run: Path) -> None:
    command = [sys.executable, "-m", "makemore_sweep.cli.sample", str(default_run)]
    args = [*command, "--n", "7", "--seed", "3"]
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert len(names) == 7 and all(n.isalpha() and n.islower() for n in names)
    again = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert again.stdout == result.stdout  # same seed, same names


def test_sample_command_names_a_missing_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "makemore_sweep.cli.sample", str(tmp_path / "nope")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "nope" in result.stderr


@pytest.mark.slow  # a full default training run (minutes): not in make test-fast
def test_plain_mlp_trains_under_2p3(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli([f"data.path={names_path}", "model=mlp", "logger=none"], tmp_path, run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    assert metrics["val_loss"] < 2.3


def test_bigram_baseline_through_the_cli(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli(
        [f"data.path={names_path}", "model=bigram", "logger=none"], tmp_path, run_env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(2.453, abs=0.002)
    assert metrics["init_loss"] == pytest.approx(math.log(27), abs=1e-6)


def test_the_last_shorter_validation_interval_is_validated_and_checkpointed(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    """One pass at batch 512 is 357 steps: validated at 250 and at the end, not only at 250."""
    run_dir = tmp_path / "run"
    args = [
        f"data.path={names_path}",
        "trainer.max_epochs=1",
        "data.batch_size=512",
        "model.n_hidden=32",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    result = train_cli(args, tmp_path, run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 357
    assert [step for step, _ in metrics["val_history"]] == [250, 357]
    assert metrics["val_loss"] == pytest.approx(
        min(loss for _, loss in metrics["val_history"]), abs=1e-5
    )
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 357
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["global_step"] == metrics["best_step"]
    with (run_dir / "csv" / "metrics.csv").open() as curve:
        validated = [int(float(row["step"])) for row in csv.DictReader(curve) if row["val_loss"]]
    assert validated == [250, 357]
