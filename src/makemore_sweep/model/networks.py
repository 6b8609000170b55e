"""The networks: the lectures' embedding MLP (with or without BatchNorm) and the count bigram.

Plain torch modules written to the network contract (docs/models.md): `model._target_` names
the class, the other `model.*` keys are its constructor's keyword arguments, typed and ranged by
its signature (config/network_spec.py). Training logic lives in `language_model.py`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import torch
import torch.nn.functional as F
from torch import nn

from makemore_sweep.config.rules import Flag, Integer, Number
from makemore_sweep.data.batches import DistinctContexts

if TYPE_CHECKING:
    from makemore_sweep.model.packed import PackedMLP, PackShape

TANH_GAIN = 5.0 / 3.0  # the lectures' Kaiming gain for tanh
OUTPUT_SCALE = 0.1  # small last layer: near-uniform predictions, loss ≈ ln(vocab) at step 0


class MLPLanguageModel(nn.Module):
    """Embedding table → concatenated context → n_layers × [Linear → BatchNorm1d → tanh] → Linear.

    With `batchnorm` the hidden Linear layers have no bias (BatchNorm's shift replaces it);
    training normalises with batch statistics, `eval()` with the running statistics.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: Annotated[int, Integer(1)] = 10,
        n_hidden: Annotated[int, Integer(1)] = 200,
        n_layers: Annotated[int, Integer(1)] = 1,
        batchnorm: Annotated[bool, Flag()] = True,
        dropout: Annotated[float, Number(0.0, 1.0, high_open=True)] = 0.0,
        direct: Annotated[
            bool, Flag()
        ] = False,  # Bengio et al. (2003) direct embedding-to-output connections
        bn_momentum: Annotated[float, Number(0.0, 1.0)] = 0.1,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)
        layers: list[nn.Module] = []
        fan_in = block_size * n_embd
        for _ in range(n_layers):
            layers.append(nn.Linear(fan_in, n_hidden, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(n_hidden, momentum=bn_momentum))
            layers.append(nn.Tanh())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            fan_in = n_hidden
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(fan_in, vocab_size)
        self.direct = nn.Linear(block_size * n_embd, vocab_size, bias=False) if direct else None
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.embedding.weight)
        for layer in self.hidden:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=TANH_GAIN / math.sqrt(layer.in_features))
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        nn.init.normal_(self.output.weight, std=OUTPUT_SCALE / math.sqrt(self.output.in_features))
        nn.init.zeros_(self.output.bias)
        if self.direct is not None:
            nn.init.zeros_(self.direct.weight)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled():
            return self._forward_folded(context)
        flat = self.embedding(context).flatten(1)
        logits = self.output(self.hidden(flat))
        if self.direct is not None:
            logits = logits + self.direct(flat)
        return logits

    # -- packed trials (network_interface.py): the fused form of packed.py ----------------
    def pack_signature(self) -> PackShape:
        """Members of one fused MLP share its shape; BatchNorm momentum and dropout stay theirs."""
        from makemore_sweep.model.packed import PackShape

        return PackShape.of(self)

    def stacked(self, members: int) -> PackedMLP:
        """The hand-written fused form: 1.5-1.9x the generic stack's speed (BENCHMARKS.md)."""
        from makemore_sweep.model.packed import PackedMLP

        return PackedMLP(members, self)

    def _forward_folded(self, context: torch.Tensor) -> torch.Tensor:
        """Evaluation (eval mode, no autograd) with the embedding folded into the first layer.

        The first Linear sees the concatenated embeddings of the window, so its output is a sum
        over positions of (vocab × n_hidden) tables, and BatchNorm with running statistics is an
        affine map that folds into them too. A lookup-and-sum then replaces the widest matrix
        product: on wide first layers evaluation takes about half the time, on the lecture's
        small one it gains little (BENCHMARKS.md). Equal to `forward` up to float rounding
        (tests/test_networks.py).
        """
        first = self.hidden[0]
        assert isinstance(first, nn.Linear)
        vocab, n_embd = self.embedding.weight.shape
        per_position = first.weight.view(first.out_features, self.block_size, n_embd)
        tables = torch.einsum("vd,hbd->bvh", self.embedding.weight, per_position)
        shift: torch.Tensor = (
            first.bias if first.bias is not None else tables.new_zeros(tables.shape[2])
        )
        rest = 1
        norm = self.hidden[1] if len(self.hidden) > 1 else None
        if isinstance(norm, nn.BatchNorm1d) and norm.running_var is not None:
            assert norm.running_mean is not None
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight
            shift = (shift - norm.running_mean) * scale
            if norm.bias is not None:
                shift = shift + norm.bias
            tables = tables * scale
            rest = 2
        if self.direct is not None:
            direct = self.direct.weight.view(vocab, self.block_size, n_embd)
            tables = torch.cat(
                [tables, torch.einsum("vd,wbd->bvw", self.embedding.weight, direct)], 2
            )
        # Row b·vocab + v of the flat table is position b's contribution for character v.
        offsets = torch.arange(self.block_size, device=context.device) * vocab
        summed = F.embedding_bag(
            context + offsets, tables.reshape(self.block_size * vocab, -1), mode="sum"
        )
        hidden = summed[:, : first.out_features] + shift
        logits = self.output(self.hidden[rest:](hidden))
        if self.direct is not None:
            logits = logits + summed[:, first.out_features :]
        return logits


class BigramModel(nn.Module):
    """The count bigram with add-one smoothing: 'trained' by counting (`fit_counts`, what the
    network contract calls a counted network), evaluated like the MLP."""

    log_probs: torch.Tensor  # a buffer: saved in checkpoints, never trained

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.register_buffer(
            "log_probs", torch.full((vocab_size, vocab_size), -math.log(vocab_size))
        )

    @torch.no_grad()
    def fit_counts(
        self, context: torch.Tensor, target: torch.Tensor, smoothing: float = 1.0
    ) -> None:
        vocab_size = self.log_probs.shape[0]
        counts = torch.full((vocab_size, vocab_size), smoothing, dtype=torch.float64)
        pairs = context[:, -1] * vocab_size + target
        counts.view(-1).index_add_(0, pairs, torch.ones_like(pairs, dtype=torch.float64))
        self.log_probs.copy_((counts / counts.sum(1, keepdim=True)).log().float())

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.log_probs[context[:, -1]]


def has_finite_state(network: nn.Module) -> bool:
    """True when no parameter or buffer (BatchNorm running statistics) is NaN or infinite."""
    tensors = [*network.parameters(), *network.buffers()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


@torch.no_grad()
def mean_loss(
    network: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096
) -> float:
    """Mean cross-entropy over a whole split, in eval mode (BatchNorm uses running statistics)."""
    vocab_size = int(max(int(y.max()) + 1, 1)) if len(y) else 1
    return split_loss(network, DistinctContexts.of(x, y, vocab_size), batch_size)


@torch.no_grad()
def split_loss(network: nn.Module, split: DistinctContexts, batch_size: int = 4096) -> float:
    """Mean cross-entropy over the rows of `split`, one forward pass per distinct context."""
    was_training = network.training
    network.eval()
    total = 0.0
    for start in range(0, len(split.contexts), batch_size):
        logits = network(split.contexts[start : start + batch_size]).float()
        counts = split.counts[start : start + batch_size].float()
        if counts.shape[1] < logits.shape[1]:  # mean_loss counts only the targets it saw
            counts = F.pad(counts, (0, logits.shape[1] - counts.shape[1]))
        # Probability-style targets: Σ counts·(−log softmax), the rows' summed loss.
        total += F.cross_entropy(logits, counts, reduction="sum").item()
    network.train(was_training)
    return total / max(split.rows, 1)
