"""Where the project's configuration lives (the repository's top-level conf/ and sweeps/)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("MAKEMORE_ROOT", Path(__file__).resolve().parents[3]))
CONF_DIR = PROJECT_ROOT / "conf"
SWEEPS_DIR = PROJECT_ROOT / "sweeps"
