"""The W&B logger of a run: started through public APIs, quiet, and with Lightning's step axis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wandb_records import read_records, run_files

START_A_RUN = """
import sys
from makemore_sweep.training.loggers import WandbRunLogger

logger = WandbRunLogger(project="makemore-sweep", save_dir=sys.argv[1], id="abc123", mode="offline", job_type="train")
logger.log_hyperparams({"model.n_hidden": 200})
logger.log_metrics({"val_loss": 2.5}, step=250)
logger.finalize("success")
import wandb
wandb.finish()
"""


def test_wandb_run_starts_without_deprecated_settings_and_keeps_lightnings_step_axis(
    tmp_path: Path,
) -> None:
    env = {"WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", START_A_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**env, "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightning's own start passes `anonymous=`, which wandb 0.31 warns about on every run.
    assert "WARNING" not in result.stderr, result.stderr
    [run_file] = run_files(tmp_path)
    assert run_file.name == "run-abc123.wandb"
    records = read_records(run_file)
    metrics = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    assert any(m.name == "trainer/global_step" for m in metrics)
    assert any(
        m.glob_name == "*" and m.step_metric == "trainer/global_step" and m.options.step_sync
        for m in metrics
    )
    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    logged = {
        "/".join(item.nested_key) or item.key: item.value_json for h in history for item in h.item
    }
    assert logged["val_loss"] == "2.5" and logged["trainer/global_step"] == "250"
