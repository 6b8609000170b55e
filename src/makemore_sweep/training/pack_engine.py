"""Training many trials at once: a Lightning Trainer drives one packed network over G slots.

A slot holds one trial (`MemberRun`, training/pack_member.py) with its own step counter,
schedule, batches, validations and end. When a member ends (completed, pruned or diverged), its
slot takes the next trial of the same cohort at once, with fresh weights, optimiser state and
BatchNorm statistics: the device never waits for the slowest member of a group. Where the
trials come from, and what is recorded when one ends, is the caller's (`MemberFeed`: the sweep
worker, sweeper/packed_worker.py).

Which trials may share a network (`cohort_of`, measured in BENCHMARKS.md, written in
docs/sweeps.md): one network signature (model/network_interface.py `pack_signature`: every
tensor's shape, and for a generically stacked network every module's settings but BatchNorm's
momentum), one optimiser kind and one batch size, in 32-bit on one device. Schedules, rates,
weight decay, momentum, clipping, step budgets and validation intervals are per member. On a
CPU, packing pays only at small batches, so larger batches train alone. The engine knows
nothing else of the network: the stack is the network's own fused form or the generic one
(model/stacked.py `stack_networks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from makemore_sweep.config.network_spec import network_of
from makemore_sweep.config.schema import RunConfig, TrainerConfig
from makemore_sweep.model.network_interface import (
    pack_signature,
    stack_refusal,
    stacks_generically,
)
from makemore_sweep.model.packed_optim import PackedOptimizer
from makemore_sweep.model.stacked import NetworkStack, stack_networks, train_step
from makemore_sweep.training.pack_member import MemberRun, pack_device
from makemore_sweep.training.run import (
    build_datamodule,
    stopped_exit_code,
)
from makemore_sweep.training.trainer_factory import print_lightning_messages_once

log = logging.getLogger(__name__)

# On a CPU one fused step pays at small batches only: at batch 32 a pack of 8 ran 2.0-2.9×
# the trial-steps of solo steps, at 512 0.78-1.22× (one core is compute-bound there).
# BENCHMARKS.md, "Packed trials: the fused step" and "Packed sweeps".
CPU_MAX_PACKED_BATCH = 128
PACKED_PRECISIONS = ("32-true", "32")
# How often a pack with a free slot asks for a trial when none was ready (meanwhile it shrinks).
REFILL_POLL_S = 1.0


@dataclass(frozen=True)
class Cohort:
    """What the trials of one packed network share."""

    network: str  # the network's class
    shape: Hashable  # its pack signature
    # For the generic stack, every key of the network: it runs one member's forward for all, and
    # a key may change that forward without changing any module (an activation held as a
    # string). A network's own fused form says in its signature what its members share.
    keys: str | None
    optimizer: str
    batch_size: int
    block_size: int  # the contexts a chunk draws (most networks' shapes depend on it too)
    accelerator: str


def cohort_of(run: RunConfig) -> Cohort | str:
    """The cohort of a trial, or why it trains alone (one sentence)."""
    if run.task is not None and getattr(run.task, "name", "train") != "train":
        return f"task={run.task.name} is not a training run"
    if str(run.trainer.precision) not in PACKED_PRECISIONS:
        return f"trainer.precision={run.trainer.precision}: packed networks train in 32-bit"
    if run.trainer.devices not in (1, "1", "auto") or run.trainer.max_time is not None:
        return "trainer.devices or trainer.max_time is set, which Lightning applies to a whole run"
    if set(run.callbacks or {}) - {"checkpoint"}:
        return "callbacks beyond the checkpoint one run inside Lightning's loop of a run alone"
    vocab_size = build_datamodule(run).splits.vocab.size  # read once per process (cached)
    spec = network_of(run)
    try:
        with torch.device("meta"):  # its structure only: no weights drawn, the RNG untouched
            network = spec.build(vocab_size, run.data.block_size)
    except Exception as error:  # noqa: BLE001 - a network that needs real tensors to be built
        return f"its network cannot be built without its weights ({type(error).__name__}: {error})"
    refusal = stack_refusal(network)
    if refusal is not None:
        return refusal
    return Cohort(
        network=f"{type(network).__module__}.{type(network).__qualname__}",
        shape=pack_signature(network),
        keys=repr(sorted(spec.keys.items())) if stacks_generically(network) else None,
        optimizer=run.optim.name,
        batch_size=run.data.batch_size,
        block_size=run.data.block_size,
        accelerator=str(run.trainer.accelerator),
    )


def packing_pays(cohort: Cohort) -> bool:
    """False where a fused step is no faster than solo steps (a CPU at large batches)."""
    on_cpu = pack_device(cohort.accelerator).type == "cpu"
    return not on_cpu or cohort.batch_size <= CPU_MAX_PACKED_BATCH


class MemberFeed(Protocol):
    """Where a pack's trials come from and go to."""

    def next_member(self, cohort: Cohort) -> MemberRun | None:
        """The next trial of this cohort, started, or None when there is none for now."""

    def ended(
        self, member: MemberRun, metrics: dict[str, Any] | None, failure: BaseException | None
    ) -> None:
        """A member ended (metrics: its metrics.json, None if that could not be written):
        record its outcome."""

    def interrupted(self, member: MemberRun) -> None:
        """A member was stopped with its worker and saved: let another worker continue it."""

    def stop_requested(self) -> bool:
        """True once the worker was asked to stop (SIGTERM)."""


class Pack:
    """G slots of one cohort: the fused network, its optimiser and the member in each slot."""

    def __init__(
        self,
        capacity: int,
        cohort: Cohort,
        feed: MemberFeed,
        device: torch.device,
        steps_per_execution: int,
    ) -> None:
        self.cohort, self.feed, self.device = cohort, feed, device
        self.steps_per_execution = steps_per_execution
        self.slots: list[MemberRun | None] = [None] * capacity
        self._network: NetworkStack | None = None  # built for the first member's network
        self._next_refill = 0.0
        self.stepping = False  # inside a chunk: members may stand at different steps

    @property
    def network(self) -> NetworkStack:
        assert self._network is not None, "the pack has no member yet"
        return self._network

    def _build(self, size: int, template: torch.nn.Module) -> None:
        """A stack of `size` slots shaped like `template`, and its optimiser (the slots' members
        are the caller's to seat)."""
        self._network = stack_networks(template, size).to(self.device)
        params, decayed = self.network.parameters_with_decay()
        self.optimizer = PackedOptimizer(self.cohort.optimizer, params, decayed, size)

    @property
    def empty(self) -> bool:
        return all(member is None for member in self.slots)

    def fill(self) -> None:
        """Seat a trial in every free slot while the feed has one; when it has none, shrink
        (and ask again after REFILL_POLL_S)."""
        if time.monotonic() < self._next_refill:
            return
        for slot, member in enumerate(self.slots):
            if member is not None:
                continue
            joining = self.feed.next_member(self.cohort)
            if joining is None:
                self._next_refill = time.monotonic() + REFILL_POLL_S
                self._shrink()
                return
            self._seat(slot, joining)
            if joining.finished_training:  # continued after its last step (killed while ending)
                self._end(slot, "completed", None)

    def _shrink(self) -> None:
        """Idle slots compute along with the others (on a CPU at full cost): when no trial
        comes for them, the members move to a network of their own number, so that a pack
        never trains its last trials slower than they would train alone."""
        members = [(slot, member) for slot, member in enumerate(self.slots) if member is not None]
        if not members or len(members) == len(self.slots):
            return
        kept = [
            (member, self.network.member_network(slot), self.optimizer.member_state(slot))
            for slot, member in members
        ]
        self._build(len(kept), kept[0][1])
        self.slots = [None] * len(kept)
        for slot, (member, network, state) in enumerate(kept):
            self.network.load_member(slot, network)
            self.optimizer.configure_member(slot, member.run.optim)
            self.optimizer.load_member_state(slot, state)
            self.slots[slot] = member

    def _seat(self, slot: int, member: MemberRun) -> None:
        if self._network is None:
            self._build(len(self.slots), member.network)
        self.network.load_member(slot, member.network.to(self.device))
        self.optimizer.configure_member(slot, member.run.optim)
        if member.optimizer_state is not None:
            self.optimizer.load_member_state(slot, member.optimizer_state)
        for other in self.slots:
            if other is not None:
                other.packed_with.add(member.number)
                member.packed_with.add(other.number)
        self.slots[slot] = member
        member.begin()

    # -- one chunk of steps ---------------------------------------------------------------
    def next_chunk(self) -> tuple[torch.Tensor, ...]:
        """Batches and rates of the next k steps for every slot: k stops at the nearest
        validation of any member, so that each validates at its own steps."""
        members = [(s, m) for s, m in enumerate(self.slots) if m is not None]
        k = min(self.steps_per_execution, *(m.steps_to_validation() for _, m in members))
        g, batch, block = len(self.slots), self.cohort.batch_size, self.cohort.block_size
        xs = torch.zeros((k, g, batch, block), dtype=torch.long, device=self.device)
        ys = torch.zeros((k, g, batch), dtype=torch.long, device=self.device)
        rates = torch.zeros((k, g), dtype=torch.float64)
        active = torch.zeros(g, dtype=torch.bool)
        for slot, member in members:
            xs[:, slot], ys[:, slot] = member.draw(k)
            rates[:, slot] = torch.tensor([member.lr_at(member.step + j) for j in range(k)])
            active[slot] = True
        return xs, ys, rates.to(self.device), active.to(self.device)

    def after_chunk(self, losses: torch.Tensor, rates: torch.Tensor) -> None:
        """Each member's steps are counted and checked; members due validate, and those that
        ended give up their slot, which takes the next trial."""
        host_losses, host_rates = losses.cpu(), rates[-1].cpu()  # one wait on the device per chunk
        for slot, member in enumerate(self.slots):
            if member is None:
                continue
            failure: BaseException | None
            try:
                failure = member.trained(host_losses[:, slot], float(host_rates[slot]))
                if failure is None and member.validation_due():
                    network = self.network.member_network(slot)
                    failure = member.validated(network, self.optimizer.member_state(slot))
            except (
                Exception
            ) as error:  # one member's error fails its trial alone, as its own job would
                log.exception("Trial %d failed in its pack", member.number)
                failure = error
            if failure is not None:
                self._end(slot, "failed", failure)
            elif member.finished_training:
                self._end(slot, "pruned" if member.stopped_early else "completed", None)
        if any(member is None for member in self.slots):
            self.fill()

    def _end(self, slot: int, state: str, failure: BaseException | None) -> None:
        member = self.slots[slot]
        assert member is not None
        self.slots[slot] = None
        try:
            network = self.network.member_network(slot)
            metrics = member.finish(network, state, None if failure is None else str(failure))
        except Exception as error:  # its records could not be finished: it fails alone
            log.exception("Trial %d could not record its end", member.number)
            self.feed.ended(member, None, failure or error)
            return
        self.feed.ended(member, metrics, failure)

    def interrupt(self) -> None:
        """The worker stops: every member keeps its place and is handed back to the study.

        Between chunks (SIGTERM: Lightning stops between steps) that place is where it stands;
        inside a chunk (Ctrl-C) members stand at different steps, so each keeps the last.ckpt
        of its last validation, as after SIGKILL.
        """
        for slot, member in enumerate(self.slots):
            if member is None:
                continue
            self.slots[slot] = None
            network = self.network.member_network(slot)
            member.interrupt(
                network,
                None if self.stepping else self.optimizer.member_state(slot),
                member.records.interrupted_message(member.step),
            )
            self.feed.interrupted(member)


class PackedChunks:
    """The Trainer's training data: one item per chunk while the pack has members.

    The chunk itself is drawn in the training step (`Pack.next_chunk`): Lightning fetches an
    item ahead of the step that uses it, and a chunk depends on where every member stands
    after the step before (its steps, rates and next validation).
    """

    def __init__(self, pack: Pack) -> None:
        self.pack = pack

    def __iter__(self) -> Iterator[int]:
        chunk = 0
        while not self.pack.empty:
            yield chunk
            chunk += 1


class PackedTask(L.LightningModule):
    """The packed network as a LightningModule: one training step runs a chunk of fused
    optimiser steps with the pack's own optimiser (per-member rates and state)."""

    def __init__(self, pack: Pack) -> None:
        super().__init__()
        self.pack = pack
        self.net = pack.network
        self.automatic_optimization = False

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """None of torch's: they take one rate per group; the pack's own optimiser steps."""
        return []

    def training_step(self, batch: int, batch_idx: int) -> None:
        if self.pack.feed.stop_requested():  # SIGTERM came before Lightning's handler was in
            raise SIGTERMException
        if self.pack.empty:  # the item Lightning fetched ahead of the last member's end
            self.trainer.should_stop = True
            return
        self.pack.stepping = True
        xs, ys, rates, active = self.pack.next_chunk()
        losses = []
        for j in range(xs.shape[0]):
            self.pack.optimizer.lr.copy_(rates[j])
            losses.append(train_step(self.net, self.pack.optimizer, xs[j], ys[j], active))
        self.pack.after_chunk(torch.stack(losses), rates)
        self.pack.stepping = False
        if self.net is not self.pack.network:  # the pack shrank to its remaining members
            self.net = self.pack.network
        if self.pack.empty:
            self.trainer.should_stop = True


def train_pack(
    capacity: int,
    cohort: Cohort,
    trainer_cfg: TrainerConfig,
    feed: MemberFeed,
) -> None:
    """Train trials of `cohort` in `capacity` slots until the feed has none left for them.

    Ctrl-C or SIGTERM: each member saves its place (last.ckpt, metrics.json `interrupted`) and
    is handed back, then the process exits as killed by that signal.
    """
    print_lightning_messages_once()
    device = pack_device(str(trainer_cfg.accelerator))
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision="32-true",
        max_epochs=1,
        max_steps=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    pack = Pack(capacity, cohort, feed, device, trainer_cfg.steps_per_execution)
    try:
        pack.fill()
        if pack.empty:
            return
        trainer.fit(PackedTask(pack), train_dataloaders=PackedChunks(pack))
    except (KeyboardInterrupt, SystemExit) as stop:
        pack.interrupt()
        raise SystemExit(stopped_exit_code(stop)) from None
