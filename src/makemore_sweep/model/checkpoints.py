"""A run's checkpoint: its format, written once here, and reading it safely (tensors and plain
values only, never pickled code).

Lightning writes a run alone's checkpoints (ModelCheckpoint) and the LightningModule adds
`run_fields`; a packed member's are written by `network_checkpoint` with the same keys, so
makemore-sample, the report, exported experiments and resume read either the same way.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from makemore_sweep.config.conversion import network_spec
from makemore_sweep.config.network_spec import NetworkSpec
from makemore_sweep.errors import UserError
from makemore_sweep.model.checkpoint_paths import BEST_CHECKPOINT, LAST_CHECKPOINT

# The paths live in checkpoint_paths (torch-free); they are named here too, beside the loading.
__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "SCHEDULE_STEPS_KEY",
    "TrainedModel",
    "best_checkpoint_of",
    "load_checkpoint",
    "network_checkpoint",
    "network_from_checkpoint",
    "network_state",
    "run_fields",
]
# The network's weights in `state_dict`: the LightningModule's `net` (model/language_model.py).
NETWORK_PREFIX = "net."
# The number of steps the learning-rate schedule is laid out over, as kept in checkpoints.
SCHEDULE_STEPS_KEY = "lr_schedule_steps"
INIT_LOSS_KEY = "init_loss"
WEIGHTS_ONLY_REFUSAL = (
    "Unsupported global"  # how torch.load(weights_only=True) refuses a pickled object
)


@dataclass(frozen=True)
class TrainedModel:
    network: nn.Module
    vocab: list[str]
    block_size: int
    spec: NetworkSpec


def run_fields(init_loss: float | None, schedule_steps: int) -> dict[str, Any]:
    """What a run keeps in its checkpoint beside Lightning's keys."""
    return {INIT_LOSS_KEY: init_loss, SCHEDULE_STEPS_KEY: schedule_steps}


def network_checkpoint(
    hparams: dict[str, Any],
    network: nn.Module,
    step: int,
    init_loss: float | None,
    schedule_steps: int,
) -> dict[str, Any]:
    """The keys of a Lightning checkpoint of a LanguageModelTask that its readers take, for a
    network trained outside Lightning's loop (a packed member)."""
    return {
        "hyper_parameters": hparams,
        "state_dict": {NETWORK_PREFIX + k: v for k, v in network.state_dict().items()},
        "global_step": step,
        **run_fields(init_loss, schedule_steps),
    }


def network_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The network's own state dict in a checkpoint."""
    return {
        k.removeprefix(NETWORK_PREFIX): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(NETWORK_PREFIX)
    }


def load_checkpoint(path: Path, *, keys_only: bool = False) -> dict[str, Any]:
    """Load tensors and plain values only: a checkpoint that pickles code is refused, not run.

    `keys_only`: memory-mapped, so that what it holds can be looked at without reading its
    tensors from disk."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=keys_only)
    except FileNotFoundError as error:
        raise UserError(f"No checkpoint at {path}; train a run first (makemore-train).") from error
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError... for damaged files
        if isinstance(error, pickle.UnpicklingError) and WEIGHTS_ONLY_REFUSAL in str(error):
            raise UserError(
                f"The checkpoint {path} was refused: it holds pickled Python objects, not only weights, "
                "and loading it could run code; use checkpoints written by makemore-train."
            ) from error
        raise UserError(
            f"The checkpoint {path} cannot be read ({type(error).__name__}); it is damaged or not a PyTorch checkpoint."
        ) from error
    if not isinstance(checkpoint, dict):
        raise UserError(
            f"The checkpoint {path} is not a makemore-train checkpoint (it holds no state dict)."
        )
    return checkpoint


def network_from_checkpoint(path: Path) -> TrainedModel:
    """Rebuild the network of a LanguageModelTask checkpoint in eval mode."""
    checkpoint = load_checkpoint(path)
    try:
        hparams = checkpoint["hyper_parameters"]
        spec = network_spec(hparams["network"])
        vocab = list(hparams["vocab"])
        block_size = int(hparams["block_size"])
        state = network_state(checkpoint)
    except (KeyError, TypeError, AttributeError) as error:
        raise UserError(
            f"The checkpoint {path} is not a makemore-train checkpoint (no {error})."
        ) from error
    network = spec.build(len(vocab), block_size)
    network.load_state_dict(state)
    network.eval()
    return TrainedModel(network=network, vocab=vocab, block_size=block_size, spec=spec)


def best_checkpoint_of(run_dir: Path) -> Path:
    path = Path(run_dir) / BEST_CHECKPOINT
    if not path.is_file():
        raise UserError(
            f"{run_dir} has no {BEST_CHECKPOINT}; give the output folder of a finished makemore-train run."
        )
    return path
