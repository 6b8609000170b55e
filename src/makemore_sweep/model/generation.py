"""Generating names from a trained network, all samples advanced together."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


@torch.no_grad()
def sample_names(
    network: nn.Module,
    vocab: Sequence[str],
    block_size: int,
    n: int,
    seed: int = 0,
    temperature: float = 1.0,
    max_len: int = 50,
) -> list[str]:
    """Sample `n` names: start from an all-'.' context, draw until '.' (index 0) or `max_len`."""
    was_training = network.training
    network.eval()
    device = next(iter(network.buffers()), next(iter(network.parameters()), torch.empty(0))).device
    generator = torch.Generator(device=device).manual_seed(seed)
    context = torch.zeros((n, block_size), dtype=torch.long, device=device)
    out = torch.zeros((n, max_len), dtype=torch.long, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    for t in range(max_len):
        logits = network(context).float() / max(temperature, 1e-6)
        nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, torch.zeros_like(nxt))
        out[:, t] = nxt
        alive &= nxt != 0
        context = torch.cat([context[:, 1:], nxt[:, None]], dim=1)
        if not alive.any():
            break
    network.train(was_training)
    names = []
    for row in out.tolist():
        end = row.index(0) if 0 in row else len(row)
        names.append("".join(vocab[i] for i in row[:end]))
    return names


def novel_fraction(samples: Iterable[str], training_words: Iterable[str]) -> float:
    """Share of samples that are not training words (empty names count as not novel)."""
    seen = set(training_words)
    samples = list(samples)
    if not samples:
        return 0.0
    return sum(bool(s) and s not in seen for s in samples) / len(samples)
