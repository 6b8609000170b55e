"""Packed trials for any network: G networks of one structure trained as one (issue 25).

A trial of this model family is too small to keep a device busy: its step is bound by
per-operation overhead, not arithmetic. Stacking G trials' weights on a leading *member* axis
and mapping the network's own forward over it (`torch.func.functional_call` under `vmap`)
turns G small products into one batched product, as HFTA does for fused training jobs. Members
never mix:

- each member reads its own batch: inputs are shaped (G, batch, block);
- BatchNorm normalises each member's features with that member's batch statistics and keeps
  running statistics per member, each moved at the member's own momentum;
- the loss is the sum of the members' mean losses, so each member's gradient is exactly the
  gradient of its own loss;
- learning rate, weight decay, momentum, clipping and the step count are per member
  (`packed_optim.py`).

Every other setting of a module (dropout's rate, say) is shared: it is part of the network's
`pack_signature`, so trials that differ in it fall into different cohorts. A network may bring
a fused form of its own (`stacked(members)`, the embedding MLP's `packed.py`), used where it
measured faster; `stack_networks` picks it.

A member is loaded from, and given back as, an ordinary network (`load_member`,
`member_network`): a trial's checkpoints load as a single network, and a trial starts from the
same initial weights as it would alone.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from makemore_sweep.model.network_interface import BATCH_NORMS, decay_flags, pack_signature
from makemore_sweep.model.packed_optim import PackedOptimizer


class NetworkStack(Protocol):
    """G networks of one cohort trained as one: what the pack engine needs of a fused form."""

    members: int
    training: bool

    def __call__(self, context: torch.Tensor) -> torch.Tensor: ...
    def parameters(self, recurse: bool = True) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def to(self, device: torch.device) -> Any: ...
    def parameters_with_decay(self) -> tuple[list[nn.Parameter], list[bool]]: ...
    def load_member(self, member: int, network: nn.Module) -> None: ...
    def member_network(self, member: int) -> nn.Module: ...


def stack_networks(template: nn.Module, members: int) -> NetworkStack:
    """`members` slots shaped like `template`: the network's own fused form, else the generic."""
    own = getattr(template, "stacked", None)
    if callable(own):
        stack: NetworkStack = own(members)
        return stack
    return StackedNetworks(template, members)


class StackedNetworks(nn.Module):
    """`members` copies of `template`'s structure with their own weights and statistics."""

    norm_momentum: torch.Tensor  # (G, BatchNorm layers): each member's momentum per layer

    def __init__(self, template: nn.Module, members: int) -> None:
        super().__init__()
        self.members = members
        self.signature: Hashable = pack_signature(template)
        # Each slot's network as loaded (a plain list: not submodules, whose weights would
        # count as this module's): member_network rebuilds it with the slot's weights.
        self.seated: list[nn.Module] = [copy.deepcopy(template)] * members
        # The structure the forward is mapped over; its own tensors are never read. A list
        # keeps it out of this module's parameters and `to()`.
        structure = copy.deepcopy(template).to("meta")
        self._structure = [structure]
        state = dict(template.named_parameters())
        self.names = list(state)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([p.detach()] * members)) for p in state.values()
        )
        self.buffer_names = [name for name, _ in template.named_buffers()]
        for index, (_, buffer) in enumerate(template.named_buffers()):
            self.register_buffer(f"stacked_{index}", torch.stack([buffer] * members))
        # BatchNorm writes each batch's statistics (momentum 1) into scratch copies; each
        # member then moves its running statistics towards them at its own momentum.
        norms = [(name, m) for name, m in structure.named_modules() if isinstance(m, BATCH_NORMS)]
        self.norms = [name for name, _ in norms]
        for _, norm in norms:
            norm.momentum = 1.0
        # Each BatchNorm's running statistics by buffer name, with their layer: found once here,
        # not by string work on every step.
        layer_of = {name: layer for layer, name in enumerate(self.norms)}
        self.running = [
            (name, layer_of[name.rpartition(".")[0]])
            for name in self.buffer_names
            if name.rpartition(".")[0] in layer_of
        ]
        self.register_buffer("norm_momentum", torch.zeros(members, max(len(self.norms), 1)))
        self._forward = vmap(self._member_forward, randomness="different")

    def _member_forward(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        out: torch.Tensor = functional_call(self._structure[0], (params, buffers), (x,))
        return out

    def _device(self) -> torch.device:
        return self.weights[0].device

    def _buffers_by_name(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"stacked_{i}") for i, name in enumerate(self.buffer_names)}

    def train(self, mode: bool = True) -> StackedNetworks:
        super().train(mode)
        self._structure[0].train(mode)
        return self

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Logits (G, batch, vocab) for contexts (G, batch, block): member g reads context[g]."""
        params = dict(zip(self.names, self.weights, strict=True))
        buffers = self._buffers_by_name()
        if not self.training or not self.norms:
            return self._forward(params, buffers, context)
        scratch = {**buffers, **{name: buffers[name].clone() for name, _ in self.running}}
        logits = self._forward(params, scratch, context)
        with torch.no_grad():
            for name, layer in self.running:
                buffer = buffers[name]
                if buffer.is_floating_point():  # running mean and variance
                    weight = self.norm_momentum[:, layer].view(-1, *[1] * (buffer.ndim - 1))
                    buffer.lerp_(scratch[name], weight.to(buffer.dtype))
                else:  # num_batches_tracked
                    buffer.copy_(scratch[name])
        return logits

    def parameters_with_decay(self) -> tuple[list[nn.Parameter], list[bool]]:
        flags = decay_flags(self.seated[0])
        return list(self.weights), [flags[name] for name in self.names]

    @torch.no_grad()
    def load_member(self, member: int, network: nn.Module) -> None:
        """Slot `member` takes `network`'s weights and statistics (a fresh or resumed trial)."""
        if pack_signature(network) != self.signature:
            raise ValueError(f"a {type(network).__name__} of another structure does not fit")
        for stacked, param in zip(self.weights, network.parameters(), strict=True):
            stacked[member].copy_(param)
        buffers = self._buffers_by_name()
        for name, buffer in network.named_buffers():
            buffers[name][member].copy_(buffer)
        for layer, name in enumerate(self.norms):
            norm = network.get_submodule(name)
            assert isinstance(norm, BATCH_NORMS)
            self.norm_momentum[member, layer] = float(norm.momentum or 0.0)
        self.seated[member] = copy.deepcopy(network)

    @torch.no_grad()
    def member_network(self, member: int) -> nn.Module:
        """Slot `member` as an ordinary network (for evaluation, sampling and checkpoints)."""
        network = copy.deepcopy(self.seated[member]).to(self._device())
        for own, stacked in zip(network.parameters(), self.weights, strict=True):
            own.copy_(stacked[member])
        buffers = self._buffers_by_name()
        for name, own_buffer in network.named_buffers():
            own_buffer.copy_(buffers[name][member])
        return network


def member_losses(
    network: NetworkStack, context: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Each member's mean cross-entropy on its batch, shape (G,); sum them to train."""
    logits = network(context)
    g, batch, v = logits.shape
    losses = F.cross_entropy(
        logits.reshape(g * batch, v).float(), target.reshape(-1), reduction="none"
    )
    return losses.view(g, batch).mean(1)


def train_step(
    network: NetworkStack,
    optimizer: PackedOptimizer,
    context: torch.Tensor,
    target: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """One optimiser step of every active member on its own batch; returns the losses (G,).

    An idle slot (no trial) computes along but neither its loss nor its weights count.
    """
    losses = member_losses(network, context, target)
    for param in network.parameters():
        param.grad = None
    (losses * active.to(losses.dtype)).sum().backward()
    optimizer.clip_gradients()
    optimizer.step(active)
    return losses.detach()
