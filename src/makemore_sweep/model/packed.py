"""The embedding MLP's own fused form for packed trials: G MLPs of one shape as one network.

The generic stack (stacked.py) maps the network's forward over its members with `vmap`; for
the lectures' MLP, this hand-written form does the same arithmetic 1.5-1.9x as fast on a CPU
(BENCHMARKS.md, "One engine", the generic stack against the fused MLP), so
`MLPLanguageModel.stacked` picks it. The weights of each layer are stacked on a leading member
axis, G small products become one `torch.bmm`, and one `batch_norm` over the G×H features
normalises each member's columns with its own statistics, as HFTA does. Unlike the generic
stack it also keeps dropout's rate per member.

A member is loaded from, and given back as, an ordinary `MLPLanguageModel` (`load_member`,
`member_network`), read through its layers only (this module does not import networks.py,
which imports it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from makemore_sweep.model.network_interface import decay_flags

BN_EPS = 1e-5  # nn.BatchNorm1d's default, so members match their solo networks


@dataclass(frozen=True)
class PackShape:
    """What members of one packed network must share: everything that sets a tensor's shape."""

    vocab_size: int
    block_size: int
    n_embd: int
    n_hidden: int
    n_layers: int
    batchnorm: bool
    direct: bool

    @classmethod
    def of(cls, network: Any) -> PackShape:
        """The shape of an `MLPLanguageModel` (read from its layers)."""
        linears = [m for m in network.hidden if isinstance(m, nn.Linear)]
        vocab_size, n_embd = network.embedding.weight.shape
        return cls(
            int(vocab_size),
            int(network.block_size),
            int(n_embd),
            linears[0].out_features,
            len(linears),
            any(isinstance(m, nn.BatchNorm1d) for m in network.hidden),
            network.direct is not None,
        )


def _stacked(members: int, *shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(members, *shape))


class PackedMLP(nn.Module):
    """`members` copies of MLPLanguageModel's architecture with their own weights.

    Weights keep nn.Linear's (out, in) layout per member, so loading and saving a member is a
    copy of slices. Per-member BatchNorm momentum and dropout live in `bn_momentum` and
    `dropout_p` (buffers, set by `load_member`).
    """

    bn_momentum: torch.Tensor  # (G,)
    dropout_p: torch.Tensor  # (G,)

    def __init__(self, members: int, template: Any) -> None:
        super().__init__()
        shape = PackShape.of(template)
        self.members, self.shape = members, shape
        # Each slot's network as loaded (a plain list: not submodules, whose weights would
        # count as this module's): member_network rebuilds it with the slot's weights
        # (its dropout layers, which PackShape does not fix, keep its own layout).
        self.seated: list[nn.Module] = [copy.deepcopy(template)] * members
        g, v, h = members, shape.vocab_size, shape.n_hidden
        self.embedding = _stacked(g, v, shape.n_embd)
        fan_ins = [shape.block_size * shape.n_embd] + [h] * (shape.n_layers - 1)
        self.weights = nn.ParameterList(_stacked(g, h, fan_in) for fan_in in fan_ins)
        # With BatchNorm the hidden layers have no bias (BatchNorm's shift replaces it).
        self.biases = nn.ParameterList([] if shape.batchnorm else [_stacked(g, h) for _ in fan_ins])
        self.bn_weights = nn.ParameterList(
            [_stacked(g, h) for _ in fan_ins] if shape.batchnorm else []
        )
        self.bn_biases = nn.ParameterList(
            [_stacked(g, h) for _ in fan_ins] if shape.batchnorm else []
        )
        for layer in range(len(fan_ins) if shape.batchnorm else 0):
            self.register_buffer(f"running_mean_{layer}", torch.zeros(g, h))
            self.register_buffer(f"running_var_{layer}", torch.ones(g, h))
        self.output_weight = _stacked(g, v, h)
        self.output_bias = _stacked(g, v)
        self.direct_weight = (
            _stacked(g, v, shape.block_size * shape.n_embd) if shape.direct else None
        )
        self.register_buffer("bn_momentum", torch.full((g,), 0.1))
        self.register_buffer("dropout_p", torch.zeros(g))
        self.any_dropout = False  # a host-side copy: asking the tensor would wait on the device

    def _device(self) -> torch.device:
        return self.embedding.device

    def _running(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = getattr(self, f"running_mean_{layer}"), getattr(self, f"running_var_{layer}")
        assert isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor)
        return mean, var

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Logits (G, batch, vocab) for contexts (G, batch, block): member g reads context[g]."""
        g, batch, _ = context.shape
        v = self.shape.vocab_size
        # Member g's table is rows g·vocab … g·vocab+vocab-1 of the flattened tables.
        rows = context + (torch.arange(g, device=context.device) * v).view(g, 1, 1)
        flat = F.embedding(rows, self.embedding.view(g * v, -1)).view(g, batch, -1)
        hidden = flat
        for layer, weight in enumerate(self.weights):
            hidden = torch.bmm(hidden, weight.transpose(1, 2))
            if self.shape.batchnorm:
                hidden = self._batch_norm(hidden, layer)
            else:
                hidden = hidden + self.biases[layer].unsqueeze(1)
            hidden = torch.tanh(hidden)
            if self.training and self.any_dropout:
                keep = 1.0 - self.dropout_p.view(g, 1, 1)
                mask = torch.rand_like(hidden) < keep
                hidden = hidden * mask / keep
        logits = torch.baddbmm(
            self.output_bias.unsqueeze(1), hidden, self.output_weight.transpose(1, 2)
        )
        if self.direct_weight is not None:
            logits = logits + torch.bmm(flat, self.direct_weight.transpose(1, 2))
        return logits

    def _batch_norm(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """One batch_norm over the G×H features: each member's columns get its own statistics."""
        g, batch, h = hidden.shape
        columns = hidden.transpose(0, 1).reshape(batch, g * h)
        mean, var = self._running(layer)
        weight, bias = self.bn_weights[layer].reshape(-1), self.bn_biases[layer].reshape(-1)
        if self.training:
            # With momentum 1 the kernel writes this batch's statistics (mean, unbiased
            # variance: nn.BatchNorm1d's update) into the scratch buffers; each member then
            # moves its running statistics towards them at its own momentum.
            batch_mean, batch_var = torch.zeros_like(mean), torch.zeros_like(var)
            normed = F.batch_norm(
                columns, batch_mean.view(-1), batch_var.view(-1), weight, bias, True, 1.0, BN_EPS
            )
            with torch.no_grad():
                momentum = self.bn_momentum.view(g, 1)
                mean.lerp_(batch_mean, momentum)
                var.lerp_(batch_var, momentum)
        else:
            normed = F.batch_norm(
                columns, mean.reshape(-1), var.reshape(-1), weight, bias, False, 0.0, BN_EPS
            )
        return normed.reshape(batch, g, h).transpose(0, 1)

    def parameters_with_decay(self) -> tuple[list[nn.Parameter], list[bool]]:
        """Every parameter, and whether it gets weight decay: the solo network's rule
        (network_interface.decay_flags), applied to its stacked counterpart."""
        template = self.seated[0]
        flags = decay_flags(template)
        decays = {id(param): flags[name] for name, param in template.named_parameters()}
        decayed = {id(stacked) for stacked, own in self._pairs(template) if decays.get(id(own))}
        params = list(self.parameters())
        return params, [id(p) in decayed for p in params]

    # -- members in and out, as ordinary networks -----------------------------------------
    def _pairs(self, network: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(stacked tensor, the solo network's tensor) for every weight and statistic."""
        linears = [m for m in network.hidden if isinstance(m, nn.Linear)]
        norms = [m for m in network.hidden if isinstance(m, nn.BatchNorm1d)]
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = [
            (self.embedding, network.embedding.weight),
            (self.output_weight, network.output.weight),
            (self.output_bias, network.output.bias),
        ]
        for layer, linear in enumerate(linears):
            pairs.append((self.weights[layer], linear.weight))
            if linear.bias is not None:
                pairs.append((self.biases[layer], linear.bias))
        for layer, norm in enumerate(norms):
            mean, var = self._running(layer)
            assert norm.running_mean is not None and norm.running_var is not None
            pairs += [
                (self.bn_weights[layer], norm.weight),
                (self.bn_biases[layer], norm.bias),
                (mean, norm.running_mean),
                (var, norm.running_var),
            ]
        if self.direct_weight is not None:
            assert network.direct is not None
            pairs.append((self.direct_weight, network.direct.weight))
        return pairs

    @torch.no_grad()
    def load_member(self, member: int, network: nn.Module) -> None:
        """Slot `member` takes `network`'s weights and statistics (a fresh or resumed trial),
        with its BatchNorm momentum and dropout rate."""
        if PackShape.of(network) != self.shape:
            raise ValueError(
                f"a {PackShape.of(network)} network does not fit a pack of {self.shape}"
            )
        for stacked, own in self._pairs(network):
            stacked[member].copy_(own)
        norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm1d)]
        dropouts = [m for m in network.modules() if isinstance(m, nn.Dropout)]
        self.bn_momentum[member] = float(norms[0].momentum or 0.0) if norms else 0.1
        self.dropout_p[member] = dropouts[0].p if dropouts else 0.0
        self.any_dropout = bool((self.dropout_p > 0).any())
        self.seated[member] = copy.deepcopy(network)

    @torch.no_grad()
    def member_network(self, member: int) -> nn.Module:
        """Slot `member` as an ordinary network (for evaluation, sampling and checkpoints)."""
        network = copy.deepcopy(self.seated[member]).to(self._device())
        for stacked, own in self._pairs(network):
            own.copy_(stacked[member])
        return network
