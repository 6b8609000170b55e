"""The global random streams a run draws from, saved in its checkpoints and restored on resume.

The training sampler has its own generator, kept by the data module. What else draws random
numbers during training (dropout: torch's global generators; Python's `random` and numpy for
any code that uses them) is saved here, so that a run continued from a checkpoint
(`resume=RUN_DIR`, a SLURM requeue) draws exactly what the uninterrupted run would have.
Everything is kept as tensors and plain values: checkpoints load weights-only.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def capture_random_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state["numpy"] = {
        "kind": str(kind),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gauss": float(cached_gauss),
    }
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gauss"],
        )
    )


class RandomStateKeeper(L.Callback):
    """Puts the global random state in every checkpoint; a resumed run takes it back before training.

    The state is applied when training starts rather than when the checkpoint is read, so that
    nothing between the two (the run's own `seed_everything`, building the model) draws over it.
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is not None:
            restore_random_state(self._restored)
            self._restored = None
