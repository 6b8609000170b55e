"""Batches drawn from tensors built once: random training chunks and whole splits for evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class StepPlan:
    """How many optimiser steps to run, how often to validate, how many steps per Lightning call."""

    max_steps: int
    val_every_n_steps: int
    steps_per_execution: int


def generator_continuing_global(device: torch.device) -> torch.Generator:
    """A random generator on `device` that starts where that device's global generator stands.

    Its first draws are the ones `torch.randint` without a generator would make, so a run's
    batches are those of a sampler drawing from the global stream after `seed_everything`;
    being its own stream, it can be saved and restored with a checkpoint.
    """
    generator = torch.Generator(device=device)
    if device.type == "cpu":
        generator.set_state(torch.get_rng_state())
    elif device.type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    else:  # no public way to read other devices' global state: seed from the run's seed
        generator.manual_seed(torch.initial_seed())
    return generator


class RandomBatchChunks:
    """Training batches sampled with replacement (as in the lectures), grouped in chunks.

    Each item is a pair of tensors shaped (k, batch, block) and (k, batch): k optimiser steps
    that the module runs inside one Lightning step, so the trainer's per-step overhead is paid
    once per chunk (like Keras' steps_per_execution). One pass ("epoch") covers
    `steps_per_epoch` steps, the validation interval; no pass goes beyond `max_steps`.
    Indices come from `generator` (on the tensors' device), whose state a checkpoint keeps.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        steps_per_epoch: int,
        steps_per_execution: int,
        max_steps: int,
        generator: torch.Generator,
        start_step: int = 0,
    ) -> None:
        self.x, self.y = x, y
        self.generator = generator
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.steps_per_execution = steps_per_execution
        self.max_steps = max_steps
        self.steps_done = start_step

    def _epoch_steps(self) -> int:
        return max(0, min(self.steps_per_epoch, self.max_steps - self.steps_done))

    def __len__(self) -> int:
        return max(1, -(-self._epoch_steps() // self.steps_per_execution))

    def __iter__(self) -> Iterator[Batch]:
        remaining = self._epoch_steps()
        n = len(self.x)
        while remaining > 0:
            k = min(self.steps_per_execution, remaining)
            index = torch.randint(
                0, n, (k, self.batch_size), device=self.x.device, generator=self.generator
            )
            remaining -= k
            self.steps_done += k
            yield self.x[index], self.y[index]


class SplitBatches:
    """A whole split in large consecutive batches, for evaluation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.x), self.batch_size):
            yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
