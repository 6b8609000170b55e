"""Reading what runs and reports leave behind: W&B offline logs, PNG files, rendered page text."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of a run's offline .wandb log, read with W&B's own `wandb leet inspect`."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(run_dir / "wandb" / "latest-run")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def visible_text(html: str) -> str:
    """The page text without tags, styles or scripts, whitespace collapsed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"<[^>]+>", " ", html)
    return re.sub(r"\s+", " ", text)
