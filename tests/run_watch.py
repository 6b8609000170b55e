"""Watching a run alone from a test: started as a user starts it, stopped once it has a checkpoint."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

WAIT_S = 300


def start_training(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "makemore_sweep.cli.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint_step(
    process: subprocess.Popen[str], checkpoint: Path, after_step: int
) -> int:
    """Poll until `checkpoint` holds a step beyond `after_step`; return that step.

    Lightning writes checkpoints atomically (temporary file, then rename), so a file that
    exists is complete.
    """
    deadline = time.monotonic() + WAIT_S
    seen_mtime = None
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"training ended before it could be stopped: {process.communicate()}"
        )
        if checkpoint.is_file() and checkpoint.stat().st_mtime_ns != seen_mtime:
            seen_mtime = checkpoint.stat().st_mtime_ns
            step = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"])
            if step > after_step:
                return step
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint after step {after_step} within {WAIT_S} s")
