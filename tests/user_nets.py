"""A user's own folder (issue 26): `my_nets.py`, a residual network with BatchNorm (not an MLP
of ours) and two networks that break the contract, and `configs/model/*.yaml` naming them."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import torch

MY_NETS = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class ResidualNet(nn.Module):
        """Embedding → Linear, then n_blocks residual blocks (Linear → BatchNorm → tanh)."""

        def __init__(self, vocab_size: int, block_size: int, width: int = 32,
                     n_blocks: int = 2, n_embd: int = 8):
            super().__init__()
            self.tokens = nn.Embedding(vocab_size, n_embd)
            self.project = nn.Linear(block_size * n_embd, width)
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.Tanh())
                for _ in range(n_blocks)
            )
            self.head = nn.Linear(width, vocab_size)

        def forward(self, x):
            h = self.project(self.tokens(x).flatten(1))
            for block in self.blocks:
                h = h + block(h)
            return self.head(h)


    class NeedsWidth(nn.Module):
        def __init__(self, vocab_size: int, block_size: int, width: int):
            super().__init__()
            self.head = nn.Linear(block_size, vocab_size)

        def forward(self, x):
            return self.head(x.float())


    class EveryPosition(nn.Module):
        """Logits at every position: (B, T, vocab), not the contract's (B, vocab)."""

        def __init__(self, vocab_size: int, block_size: int):
            super().__init__()
            self.tokens = nn.Embedding(vocab_size, vocab_size)

        def forward(self, x):
            return self.tokens(x)


    NOT_A_NETWORK = dict
    '''
)


def write_user_folder(folder: Path) -> Path:
    """`folder` as a user sets it up: my_nets.py and configs/model/{resnet,needs_width}.yaml."""
    (folder / "my_nets.py").write_text(MY_NETS)
    models = folder / "configs" / "model"
    models.mkdir(parents=True)
    (models / "resnet.yaml").write_text("_target_: my_nets.ResidualNet\nwidth: 24\n")
    (models / "needs_width.yaml").write_text("_target_: my_nets.NeedsWidth\n")
    return folder


def users_network(folder: Path, **keys: int) -> torch.nn.Module:
    """The ResidualNet of `folder`'s my_nets.py, built for names.txt (27 characters, context 3)."""
    spec = importlib.util.spec_from_file_location("users_nets", folder / "my_nets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network: torch.nn.Module = module.ResidualNet(27, 3, **keys)
    return network
