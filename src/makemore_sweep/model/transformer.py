"""A small causal Transformer in the manner of makemore.py, written to the network contract.

Pre-norm blocks (LayerNorm → causal self-attention, LayerNorm → 4× MLP, each added back),
learned positions, `scaled_dot_product_attention`. The defaults are makemore.py's: 4 layers,
4 heads, 64-d (about 200k parameters). The contract asks for the next character after the
whole context, so the logits are read at the last position; the shorter contexts of a name are
examples of their own (left-padded windows), as makemore.py's loss at every position sees them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be a multiple of n_head={n_head}")
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, positions, channels = x.shape
        heads = self.qkv(x).view(batch, positions, 3, self.n_head, channels // self.n_head)
        q, k, v = heads.permute(2, 0, 3, 1, 4)  # each (B, heads, T, head size)
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(attended.transpose(1, 2).reshape(batch, positions, channels))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(approximate="tanh"), nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.position_embedding = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*(Block(n_embd, n_head, dropout) for _ in range(n_layer)))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def embedding_table(self) -> torch.Tensor:
        """The characters' table for the report (not the positions' one)."""
        return self.token_embedding.weight

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(context.shape[-1], device=context.device)
        x = self.token_embedding(context) + self.position_embedding(positions)
        return self.head(self.ln_f(self.blocks(x))[:, -1])
