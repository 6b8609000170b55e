"""Any network of one structure packs (issue 25): the network contract as the engine reads it.

The network here is written in this test, as a user would write one: not shipped and not an
MLP (a residual block with two BatchNorms). Trained in the generic stack (model/stacked.py)
with the pack's per-member optimiser, each member equals the same network trained alone with
the run alone's optimiser (language_model.build_optimizer), within 1e-4 in dev loss.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from makemore_sweep.config.schema import OptimConfig
from makemore_sweep.data.corpus import SplitTensors, load_splits
from makemore_sweep.model.language_model import build_optimizer, scheduled_lr
from makemore_sweep.model.network_interface import (
    count_parameters,
    decay_flags,
    embedding_weights,
    is_counted,
    pack_signature,
    stack_refusal,
)
from makemore_sweep.model.networks import BigramModel, MLPLanguageModel, mean_loss
from makemore_sweep.model.packed import PackedMLP
from makemore_sweep.model.packed_optim import PackedOptimizer
from makemore_sweep.model.stacked import StackedNetworks, stack_networks, train_step
from makemore_sweep.model.transformer import Transformer
from makemore_sweep.model.wavenet import WaveNet

BLOCK, BATCH, TOLERANCE = 4, 32, 1e-4


class ResidualNet(nn.Module):
    """Embedding → Linear → BatchNorm → tanh, then a residual block with its own BatchNorm."""

    def __init__(self, vocab_size: int, block_size: int, width: int = 24, momentum: float = 0.1):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, 8)
        self.project = nn.Linear(block_size * 8, width, bias=False)
        self.norm = nn.BatchNorm1d(width, momentum=momentum)
        self.residual = nn.Sequential(
            nn.Linear(width, width, bias=False),
            nn.BatchNorm1d(width, momentum=momentum),
            nn.ReLU(),
            nn.Linear(width, width),
        )
        self.head = nn.Linear(width, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.norm(self.project(self.tokens(x).flatten(1))))
        return self.head(h + self.residual(h))


@pytest.fixture(scope="module")
def splits(names_path: Path) -> SplitTensors:
    return load_splits(names_path, block_size=BLOCK)


def batches(splits: SplitTensors, seed: int, steps: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, len(splits.train[0]), (BATCH,), generator=generator) for _ in range(steps)
    ]


def train_alone(
    network: nn.Module, optim: OptimConfig, splits: SplitTensors, feed: list[torch.Tensor]
) -> None:
    optimizer = build_optimizer(network, optim)
    x, y = splits.train
    for step, index in enumerate(feed):
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(optim, step, len(feed))
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(x[index]), y[index]).backward()
        if optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(network.parameters(), optim.grad_clip)
        optimizer.step()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_a_network_written_in_a_test_trains_packed_as_it_trains_alone(
    splits: SplitTensors, kind: str
) -> None:
    steps, vocab = 250, splits.vocab.size
    optims = [
        OptimConfig(name=kind, lr=0.01 if kind == "adamw" else 0.1, weight_decay=0.01),
        OptimConfig(name=kind, lr=0.003 if kind == "adamw" else 0.05, grad_clip=0.5),
        OptimConfig(name=kind, lr=0.02 if kind == "adamw" else 0.2, schedule="cosine"),
    ]
    momenta = [0.1, 0.01, 0.5]  # per member, as BatchNorm's momentum is in the fused MLP
    networks = []
    for seed, momentum in zip((1, 2, 3), momenta, strict=True):
        torch.manual_seed(seed)
        networks.append(ResidualNet(vocab, BLOCK, momentum=momentum))
    stack = stack_networks(networks[0], 4)  # slot 3 stays idle
    assert isinstance(stack, StackedNetworks)  # no fused form of its own: the generic stack
    params, decayed = stack.parameters_with_decay()
    optimizer = PackedOptimizer(kind, params, decayed, 4)
    for slot, (network, optim) in enumerate(zip(networks, optims, strict=True)):
        stack.load_member(slot, network)
        optimizer.configure_member(slot, optim)
    feeds = [batches(splits, seed, steps) for seed in (1, 2, 3, 99)]
    x, y = splits.train
    active = torch.tensor([True, True, True, False])
    for step in range(steps):
        for slot, optim in enumerate(optims):
            optimizer.lr[slot] = scheduled_lr(optim, step, steps)
        context = torch.stack([x[feed[step]] for feed in feeds])
        target = torch.stack([y[feed[step]] for feed in feeds])
        train_step(stack, optimizer, context, target, active)
    packed = [mean_loss(stack.member_network(slot), *splits.val) for slot in range(3)]
    alone = []
    for network, optim, feed in zip(networks, optims, feeds[:3], strict=True):
        solo = copy.deepcopy(network)
        train_alone(solo, optim, splits, feed)
        alone.append(mean_loss(solo, *splits.val))
        assert isinstance(solo.norm, nn.BatchNorm1d) and solo.norm.running_var is not None
    for slot in range(3):
        assert abs(packed[slot] - alone[slot]) < TOLERANCE, (slot, packed, alone)
    # Not vacuous: they learnt, and their settings led them to different models.
    assert all(loss < math.log(vocab) - 0.3 for loss in alone), alone
    assert max(alone) - min(alone) > 10 * TOLERANCE, alone
    # Each member's running statistics are its own, as its network alone keeps them.
    back = stack.member_network(1)
    assert isinstance(back, ResidualNet) and back.norm.momentum == 0.01


# Networks the generic stack must compute member by member: this test's own, and the shipped
# WaveNet (BatchNorm over positions) and Transformer (attention, LayerNorm), small.
STACKED_NETWORKS = {
    "residual": lambda momentum: ResidualNet(27, BLOCK, momentum=momentum),
    "wavenet": lambda momentum: WaveNet(27, BLOCK, n_embd=6, n_hidden=16, bn_momentum=momentum),
    "transformer": lambda momentum: Transformer(27, BLOCK, n_layer=2, n_head=2, n_embd=16),
}


@pytest.mark.parametrize("kind", sorted(STACKED_NETWORKS))
def test_the_generic_stack_computes_what_each_network_computes(kind: str) -> None:
    torch.manual_seed(0)
    networks = [STACKED_NETWORKS[kind](m) for m in (0.1, 0.3)]
    for network in networks:  # non-trivial affine terms and biases
        for param in network.parameters():
            param.data.normal_(0, 0.3)
    stack = stack_networks(networks[0], 2)
    assert isinstance(stack, StackedNetworks) and stack_refusal(networks[0]) is None
    for slot, network in enumerate(networks):
        stack.load_member(slot, network)
    x = torch.randint(0, 27, (2, 50, BLOCK))
    logits = stack(x)
    for slot, network in enumerate(networks):
        assert torch.allclose(logits[slot], network(x[slot]), atol=1e-5), slot
        back = stack.member_network(slot)
        for key, value in network.state_dict().items():  # running statistics after the step
            assert torch.allclose(back.state_dict()[key].float(), value.float(), atol=1e-6), key
    stack.eval()
    for slot, network in enumerate(networks):
        network.eval()
        assert torch.allclose(stack(x)[slot], network(x[slot]), atol=1e-5), slot
    if kind == "residual":
        with pytest.raises(ValueError, match="does not fit"):
            stack.load_member(0, ResidualNet(27, BLOCK, width=16))


def test_one_rule_decides_which_weights_decay_alone_and_packed() -> None:
    network = ResidualNet(27, BLOCK)
    flags = decay_flags(network)
    assert {name for name, decays in flags.items() if decays} == {
        "project.weight",
        "residual.0.weight",
        "residual.3.weight",
        "head.weight",
    }  # not the embedding table, biases or BatchNorm's gain and shift
    _, stacked = StackedNetworks(network, 2).parameters_with_decay()
    assert stacked == list(flags.values())
    mlp = MLPLanguageModel(27, 3, n_embd=4, n_hidden=8, n_layers=2, direct=True)
    mlp_flags = decay_flags(mlp)
    fused = PackedMLP(2, mlp)
    params, fused_flags = fused.parameters_with_decay()
    assert sum(fused_flags) == sum(mlp_flags.values()) == 4  # 2 hidden, output, direct
    assert sum(p[0].numel() for p, f in zip(params, fused_flags, strict=True) if f) == sum(
        p.numel() for name, p in mlp.named_parameters() if mlp_flags[name]
    )
    optimizer = build_optimizer(mlp, OptimConfig(weight_decay=0.1))
    assert [len(g["params"]) for g in optimizer.param_groups] == [4, len(mlp_flags) - 4]


def test_a_cohort_is_a_structure_and_momentum_stays_per_member() -> None:
    base = pack_signature(ResidualNet(27, BLOCK))
    assert pack_signature(ResidualNet(27, BLOCK, momentum=0.5)) == base
    assert pack_signature(ResidualNet(27, BLOCK, width=32)) != base
    assert pack_signature(ResidualNet(27, BLOCK + 1)) != base
    dropped = ResidualNet(27, BLOCK)
    dropped.residual.insert(3, nn.Dropout(0.1))  # a shared setting of the generic stack
    assert pack_signature(dropped) != base
    # The fused MLP keeps dropout per member: only its shape is its cohort.
    spec = {"n_embd": 4, "n_hidden": 8}
    mlp = pack_signature(MLPLanguageModel(27, 3, **spec))
    assert pack_signature(MLPLanguageModel(27, 3, **{**spec, "bn_momentum": 0.5})) == mlp


def test_what_cannot_stack_says_why() -> None:
    assert stack_refusal(ResidualNet(27, BLOCK)) is None
    refusal = stack_refusal(BigramModel(27, 1))
    assert refusal is not None and "counted, not trained" in refusal
    cumulative = ResidualNet(27, BLOCK)
    cumulative.norm.momentum = None
    refusal = stack_refusal(cumulative)
    assert refusal is not None and "momentum=None" in refusal


def test_what_a_network_says_of_itself() -> None:
    bigram = BigramModel(27, 1)
    assert is_counted(bigram) and count_parameters(bigram) == 27 * 27
    network = ResidualNet(27, BLOCK)
    assert not is_counted(network)
    assert count_parameters(network) == sum(p.numel() for p in network.parameters())
    table = embedding_weights(network, 27)  # its embedding of vocab_size rows
    assert table is network.tokens.weight
    assert embedding_weights(bigram, 27) is None

    class OwnTable(ResidualNet):
        def embedding_table(self) -> torch.Tensor:
            return self.head.weight

    own = OwnTable(27, BLOCK)
    assert embedding_weights(own, 27) is own.head.weight  # what the network says wins
