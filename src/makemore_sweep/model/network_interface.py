"""What the engine knows of a network: the network contract (DESIGN.md), nothing more.

A network is a `torch.nn.Module` whose `forward` maps (B, block_size) character indices to
(B, vocab_size) logits; BatchNorm layers keep running statistics, used in evaluation. Training,
packing, the records and the report read a network only through the functions below, never
through a test of its class or its config's name.

A network may say more of itself, each optional:
- `fit_counts(context, target)`: it is counted, not trained (the count bigram);
- `embedding_table()`: the (vocab, d) table the report plots (default: its nn.Embedding of
  vocab_size rows, if it has one);
- `pack_signature()` and `stacked(members)`: a specialised fused form for packed trials and
  what members of one such form must share (the embedding MLP; others stack generically,
  model/stacked.py).
"""

from __future__ import annotations

from collections.abc import Hashable

import torch
from torch import nn

from makemore_sweep.errors import ConfigError

# BatchNorm layers, whose running statistics a pack keeps per member (model/stacked.py).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def check_forward(network: nn.Module, vocab_size: int, block_size: int) -> None:
    """Refuse, in one sentence, a network whose forward does not map (B, block_size) character
    indices to (B, vocab_size) logits: one probe in eval mode, so no statistic moves. On the meta
    device (a pack's cohort) it costs no arithmetic."""
    device = next((t.device for t in [*network.parameters(), *network.buffers()]), None)
    contexts = torch.zeros((2, block_size), dtype=torch.long, device=device)
    name = f"{type(network).__module__}.{type(network).__qualname__}"
    was_training = network.training
    network.eval()
    try:
        logits = network(contexts)
    except Exception as error:
        raise ConfigError(
            f"{name}'s forward failed on contexts of shape (2, {block_size}): "
            f"{type(error).__name__}: {' '.join(str(error).split()).rstrip('.')}."
        ) from error
    finally:
        network.train(was_training)
    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if shape != (2, vocab_size):
        raise ConfigError(
            f"{name}'s forward returned {shape} for contexts of shape (2, {block_size}): "
            f"it must return logits of shape (B, vocab_size) = (2, {vocab_size})."
        )


def is_counted(network: nn.Module) -> bool:
    """True for a network that is fitted by counting (`fit_counts`), not by gradient steps."""
    return callable(getattr(network, "fit_counts", None))


def count_parameters(network: nn.Module) -> int:
    """Its trainable weights; for a counted network, the entries of its tables (buffers)."""
    if is_counted(network):
        return sum(b.numel() for b in network.buffers() if b.is_floating_point())
    return sum(p.numel() for p in network.parameters())


def decay_flags(network: nn.Module) -> dict[str, bool]:
    """Whether each parameter (by its name in `named_parameters`) gets weight decay.

    The one rule, alone and packed: weight matrices decay; embedding tables, biases and the
    gains and shifts of norm layers do not (decaying them hurts, and an embedding row is only
    updated when its character occurs).
    """
    flags: dict[int, bool] = {}
    for module in network.modules():
        for param in module.parameters(recurse=False):
            flags[id(param)] = param.ndim >= 2 and not isinstance(module, nn.Embedding)
    return {name: flags[id(param)] for name, param in network.named_parameters()}


def embedding_weights(network: nn.Module, vocab_size: int) -> torch.Tensor | None:
    """The (vocab, d) character embedding table, or None for a network without one."""
    own = getattr(network, "embedding_table", None)
    if callable(own):
        table = own()
        return table if isinstance(table, torch.Tensor) else None
    for module in network.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == vocab_size:
            return module.weight
    return None


def pack_signature(network: nn.Module) -> Hashable:
    """What the members of one packed network must share: equal signatures stack together.

    A network with a fused form of its own says what that form shares (`pack_signature()`);
    any other stacks generically, and then shares its whole structure: every module's type and
    settings and every tensor's shape, except BatchNorm's momentum, which stays per member.
    """
    own = getattr(network, "pack_signature", None)
    if callable(own):  # the network's class is part of the cohort too (pack_engine.Cohort)
        signature: Hashable = own()
        return signature
    modules = tuple(
        (name, type(module).__qualname__, _settings(module))
        for name, module in network.named_modules()
    )
    tensors = tuple(
        (name, tuple(t.shape), str(t.dtype)) for name, t in network.state_dict().items()
    )
    return (type(network).__module__, type(network).__qualname__, modules, tensors)


def stacks_generically(network: nn.Module) -> bool:
    """True for a network without a fused form of its own (model/stacked.py stacks it)."""
    return not callable(getattr(network, "pack_signature", None))


def _settings(module: nn.Module) -> str:
    if isinstance(module, BATCH_NORMS):
        # Momentum is per member; a cumulative average (None) is another cohort.
        return (
            f"{module.num_features}, eps={module.eps}, affine={module.affine}, "
            f"track={module.track_running_stats}, cumulative={module.momentum is None}"
        )
    return module.extra_repr()


def stack_refusal(network: nn.Module) -> str | None:
    """Why this network cannot be packed with others (one sentence), or None when it can."""
    if is_counted(network):
        return f"a {type(network).__name__} is counted, not trained"
    if not any(True for _ in network.parameters()):
        return f"a {type(network).__name__} has no parameters to train"
    for module in network.modules():
        if isinstance(module, BATCH_NORMS) and module.momentum is None:
            return "BatchNorm with momentum=None (a cumulative average) counts batches per run"
    return None
