"""Lecture 5's hierarchical network ("WaveNet"), written to the network contract as a user would.

The context is fused two characters at a time, level by level, instead of being flattened at
once: (B, 8) characters → (B, 8, 24) embeddings → (B, 4, 48) → Linear → BatchNorm → tanh →
(B, 2, 256) → ... → (B, 128) → logits. With the lecture's sizes (context 8, 24-d embeddings,
128 hidden) it has 76,579 parameters and reaches dev ≈ 1.993 (experiment=wavenet).
"""

from __future__ import annotations

import math

import torch
from torch import nn

OUTPUT_SCALE = 0.1  # the lecture's less confident last layer at initialisation


class FlattenConsecutive(nn.Module):
    """(B, T, C) → (B, T / n, C·n): n consecutive positions side by side."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, positions, channels = x.shape
        return x.reshape(batch, positions // self.n, channels * self.n)

    def extra_repr(self) -> str:
        return f"n={self.n}"


class SequenceBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the batch and the positions of (B, T, C), as the lecture's own layer;
    running statistics as torch keeps them (used in evaluation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class WaveNet(nn.Module):
    """Embedding → log2(block_size) × [FlattenConsecutive(2) → Linear → BatchNorm → tanh] → Linear.

    The context must be a power of two (2, 4, 8, 16...): each level halves it.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int = 24,
        n_hidden: int = 128,
        dropout: float = 0.0,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        levels = round(math.log2(block_size)) if block_size > 1 else 0
        if block_size < 2 or 2**levels != block_size:
            raise ValueError(f"its context (data.block_size={block_size}) must be a power of two")
        self.embedding = nn.Embedding(vocab_size, n_embd)
        layers: list[nn.Module] = []
        width = n_embd
        for _ in range(levels):
            layers += [
                FlattenConsecutive(2),
                nn.Linear(width * 2, n_hidden, bias=False),  # BatchNorm's shift is the bias
                SequenceBatchNorm(n_hidden, momentum=bn_momentum),
                nn.Tanh(),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = n_hidden
        self.levels = nn.Sequential(*layers)
        self.output = nn.Linear(n_hidden, vocab_size)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):  # the lecture's 1/sqrt(fan_in), no gain
                nn.init.normal_(layer.weight, std=1 / math.sqrt(layer.in_features))
        with torch.no_grad():
            self.output.weight.mul_(OUTPUT_SCALE)
            self.output.bias.zero_()

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        fused = self.levels(self.embedding(context))  # (B, 1, n_hidden)
        return self.output(fused.squeeze(1))
