"""metrics.json: the contract file every run writes in its output folder."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
CONTRACT_KEYS = (
    "val_loss",
    "test_loss",
    "train_loss",
    "init_loss",
    "n_params",
    "n_train",
    "n_val",
    "n_test",
    "steps",
    "train_time_s",
    "time_to_target_s",
    "samples",
    "novel_fraction",
)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null reads back cleanly everywhere
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write atomically: a reader never sees a half-written file, a crash never truncates one."""
    path = Path(run_dir) / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())
