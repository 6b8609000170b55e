"""Where a run keeps its checkpoints, inside its output folder.

Torch-free on purpose: the command line (`resume=RUN_DIR`) and the sweep process read these
paths without loading the training stack.
"""

from __future__ import annotations

from pathlib import Path

BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
