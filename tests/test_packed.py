"""Packed trials (issues 20, 25): a trial trained in a packed network equals the same trial alone.

"Alone" is the solo path itself: LanguageModelTask's network, its optimiser
(configure_optimizers) and its schedule (lr_at), with torch's norm clipping as Lightning calls
it. Same seed, same batches, dropout 0: dev losses agree within 1e-4. Both packed forms of the
MLP are held to it: its hand-written fused form (packed.py) and the generic stack (stacked.py).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from makemore_sweep.config.network_spec import SHIPPED_NETWORKS
from makemore_sweep.config.schema import OptimConfig
from makemore_sweep.data.corpus import SplitTensors, load_splits
from makemore_sweep.model.language_model import LanguageModelTask
from makemore_sweep.model.networks import MLPLanguageModel, mean_loss
from makemore_sweep.model.packed import PackedMLP
from makemore_sweep.model.packed_optim import PackedOptimizer
from makemore_sweep.model.stacked import StackedNetworks, stack_networks, train_step

BATCH = 32
TOLERANCE = 1e-4
MLP_TARGET = SHIPPED_NETWORKS["mlp_bn"]


@pytest.fixture(scope="module")
def splits(names_path: Path) -> SplitTensors:
    return load_splits(names_path, block_size=3)


def batches(splits: SplitTensors, seed: int, steps: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n = len(splits.train[0])
    return [torch.randint(0, n, (BATCH,), generator=generator) for _ in range(steps)]


def fresh_task(
    splits: SplitTensors, spec: dict[str, Any], optim: OptimConfig, seed: int, max_steps: int
) -> LanguageModelTask:
    torch.manual_seed(seed)
    return LanguageModelTask(
        list(splits.vocab.chars),
        3,
        {"_target_": MLP_TARGET, **spec},
        asdict(optim),
        max_steps,
        divergence_loss=1e9,
    )


def train_alone(task: LanguageModelTask, splits: SplitTensors, indices: list[torch.Tensor]) -> None:
    optimizer = task.configure_optimizers()
    x, y = splits.train
    for step, index in enumerate(indices):
        for group in optimizer.param_groups:
            group["lr"] = task.lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(task.net(x[index]), y[index]).backward()
        if task.optim_spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(task.net.parameters(), task.optim_spec.grad_clip)
        optimizer.step()


class Pack:
    """A packed network and its optimiser, with each slot's trial as a LanguageModelTask."""

    def __init__(self, tasks: list[LanguageModelTask], members: int, generic: bool = False) -> None:
        first = tasks[0]
        self.network = (
            StackedNetworks(first.net, members) if generic else stack_networks(first.net, members)
        )
        params, decayed = self.network.parameters_with_decay()
        self.optimizer = PackedOptimizer(first.optim_spec.name, params, decayed, members)
        self.tasks: list[LanguageModelTask | None] = [None] * members
        self.steps_done = [0] * members
        for slot, task in enumerate(tasks):
            self.fill(slot, task)

    def fill(self, slot: int, task: LanguageModelTask) -> None:
        self.network.load_member(slot, task.net)
        self.optimizer.configure_member(slot, task.optim_spec)
        self.tasks[slot], self.steps_done[slot] = task, 0

    def step(self, x: torch.Tensor, y: torch.Tensor, indices: list[torch.Tensor]) -> None:
        for slot, task in enumerate(self.tasks):
            if task is not None:
                self.optimizer.lr[slot] = task.lr_at(self.steps_done[slot])
        active = torch.tensor([task is not None for task in self.tasks])
        context = torch.stack([x[index] for index in indices])
        target = torch.stack([y[index] for index in indices])
        train_step(self.network, self.optimizer, context, target, active)
        self.steps_done = [s + 1 for s in self.steps_done]

    def dev_loss(self, slot: int, splits: SplitTensors) -> float:
        task = self.tasks[slot]
        assert task is not None
        return mean_loss(self.network.member_network(slot), *splits.val)


LECTURE = {"n_embd": 10, "n_hidden": 200}


@pytest.mark.parametrize(
    "optims",
    [
        [
            OptimConfig(name="adamw", lr=0.01, weight_decay=0.0),
            OptimConfig(name="adamw", lr=0.003, weight_decay=0.1, grad_clip=1.0),
            OptimConfig(name="adamw", lr=0.02, weight_decay=0.01, beta2=0.95, schedule="cosine"),
        ],
        [
            OptimConfig(name="sgd", lr=0.1, schedule="step", decay_at_frac=0.5),
            OptimConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="constant"),
            OptimConfig(name="sgd", lr=0.2, grad_clip=0.5, schedule="step", decay_factor=0.3),
        ],
    ],
    ids=["adamw", "sgd"],
)
@pytest.mark.parametrize("generic", [False, True], ids=["fused", "generic"])
def test_a_trial_in_a_pack_equals_the_trial_alone(
    splits: SplitTensors, optims: list[OptimConfig], generic: bool
) -> None:
    steps = 300
    specs = [LECTURE, {**LECTURE, "bn_momentum": 0.01}, {**LECTURE, "bn_momentum": 0.5}]
    seeds = [11, 12, 13]
    tasks = [fresh_task(splits, s, o, seed, steps) for s, o, seed in zip(specs, optims, seeds)]
    # Slot 3 stays idle. BatchNorm momenta differ: both forms keep them per member.
    pack = Pack([copy.deepcopy(task) for task in tasks], members=4, generic=generic)
    feeds = [batches(splits, seed, steps) for seed in seeds]
    idle = batches(splits, 99, steps)
    for step in range(steps):
        pack.step(*splits.train, [*(feed[step] for feed in feeds), idle[step]])
    alone = []
    for task, feed in zip(tasks, feeds, strict=True):
        train_alone(task, splits, feed)
        alone.append(mean_loss(task.net, *splits.val))
    packed = [pack.dev_loss(slot, splits) for slot in range(3)]
    for slot in range(3):
        assert abs(packed[slot] - alone[slot]) < TOLERANCE, (slot, packed, alone)
    # Not vacuous: the members' settings led them to different models.
    assert max(alone) - min(alone) > 10 * TOLERANCE, alone
    assert all(loss < 2.9 for loss in alone), alone  # they learnt (ln 27 ≈ 3.30)


def test_a_refilled_slot_starts_afresh_and_equals_its_trial_alone(splits: SplitTensors) -> None:
    """A slot taken over mid-run gets fresh weights, optimiser state, statistics and steps."""
    total, later = 300, 120
    optim = OptimConfig(name="adamw", lr=0.01, weight_decay=0.05)
    first = [fresh_task(splits, LECTURE, optim, seed, total) for seed in (1, 2)]
    newcomer = fresh_task(splits, LECTURE, replace(optim, lr=0.02), 3, total - later)
    pack = Pack([copy.deepcopy(task) for task in first], members=2)
    feeds = [batches(splits, seed, total) for seed in (1, 2)]
    newcomer_feed = batches(splits, 3, total - later)
    for step in range(total):
        if step == later:  # slot 1's trial ends; the next trial takes its place
            pack.fill(1, copy.deepcopy(newcomer))
        second = feeds[1][step] if step < later else newcomer_feed[step - later]
        pack.step(*splits.train, [feeds[0][step], second])
    train_alone(first[0], splits, feeds[0])
    train_alone(newcomer, splits, newcomer_feed)
    assert abs(pack.dev_loss(0, splits) - mean_loss(first[0].net, *splits.val)) < TOLERANCE
    assert abs(pack.dev_loss(1, splits) - mean_loss(newcomer.net, *splits.val)) < TOLERANCE


def test_a_member_saves_and_loads_as_an_ordinary_network(splits: SplitTensors) -> None:
    spec = {"n_embd": 4, "n_hidden": 16, "n_layers": 2, "direct": True}
    tasks = [fresh_task(splits, spec, OptimConfig(), seed, 10) for seed in (5, 6)]
    pack = Pack(tasks, members=2)
    assert isinstance(pack.network, PackedMLP)  # the MLP's own fused form is chosen
    for slot, task in enumerate(tasks):
        out = pack.network.member_network(slot)
        assert out.state_dict().keys() == task.net.state_dict().keys()
        for key, value in task.net.state_dict().items():
            assert torch.equal(out.state_dict()[key], value), key
    with pytest.raises(ValueError, match="does not fit"):
        other = fresh_task(splits, {**spec, "n_hidden": 8}, OptimConfig(), 0, 10)
        pack.network.load_member(0, other.net)


@pytest.mark.parametrize(
    "spec",
    [
        {"n_embd": 4, "n_hidden": 16},
        {"n_embd": 5, "n_hidden": 12, "n_layers": 2, "dropout": 0.2},
        {"n_embd": 3, "n_hidden": 10, "batchnorm": False, "direct": True},
        {"n_embd": 6, "n_hidden": 8, "direct": True, "bn_momentum": 0.5},
    ],
    ids=["bn", "two-layers-dropout", "no-bn-direct", "bn-direct"],
)
def test_every_member_computes_what_its_network_computes(spec: dict[str, Any]) -> None:
    """Training-mode logits (batch statistics; dropout off) and the running statistics after
    the step, then eval-mode logits: member by member, as the solo networks."""
    block = 3
    torch.manual_seed(0)
    solos = [MLPLanguageModel(27, block, **{**spec, "dropout": 0.0}) for _ in range(3)]
    for solo in solos:  # non-trivial affine terms and biases
        for param in solo.parameters():
            param.data.normal_(0, 0.5)
    pack = PackedMLP(3, solos[0])
    for slot, solo in enumerate(solos):
        pack.load_member(slot, solo)
    x = torch.randint(0, 27, (3, 64, block))
    packed = pack(x)
    for slot, solo in enumerate(solos):
        assert torch.allclose(packed[slot], solo(x[slot]), atol=1e-5), slot
    pack.eval()
    packed_eval = pack(x)
    for slot, solo in enumerate(solos):
        solo.eval()
        assert torch.allclose(packed_eval[slot], solo(x[slot]).detach(), atol=1e-5), slot
        back = pack.member_network(slot)
        for key, value in solo.state_dict().items():  # running statistics included
            if key.endswith("num_batches_tracked"):
                continue  # a counter BatchNorm reads only without a momentum; not packed
            assert torch.allclose(back.state_dict()[key], value, atol=1e-6), key
