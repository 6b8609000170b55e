"""Reading a run's best checkpoint safely: tensors and plain values only, never pickled code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from makemore_sweep.errors import UserError
from makemore_sweep.networks import NetworkSpec, build_network

BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class TrainedModel:
    network: nn.Module
    vocab: list[str]
    block_size: int
    spec: NetworkSpec


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise UserError(f"No checkpoint at {path}; train a run first (makemore-train).") from error
    except Exception as error:  # weights_only refuses anything that is not plain data
        raise UserError(f"The checkpoint {path} cannot be read as weights only ({error}).") from error


def network_from_checkpoint(path: Path) -> TrainedModel:
    """Rebuild the network of a LanguageModelTask checkpoint in eval mode."""
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    spec = NetworkSpec.from_dict(hparams["network"])
    vocab = list(hparams["vocab"])
    network = build_network(spec, len(vocab), int(hparams["block_size"]))
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    network.load_state_dict(state)
    network.eval()
    return TrainedModel(network=network, vocab=vocab, block_size=int(hparams["block_size"]), spec=spec)


def best_checkpoint_of(run_dir: Path) -> Path:
    path = Path(run_dir) / BEST_CHECKPOINT
    if not path.is_file():
        raise UserError(
            f"{run_dir} has no {BEST_CHECKPOINT}; give the output folder of a finished makemore-train run."
        )
    return path
