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


@dataclass(frozen=True)
class DistinctContexts:
    """A split as evaluation needs it: each distinct context once, with how often each
    character follows it (its row of `counts`).

    The mean cross-entropy over the split's rows is Σ_c Σ_t counts[c, t]·(−log p(t | c)) / rows:
    in eval mode (running statistics) a context's prediction does not depend on its batch, so
    each distinct context needs one forward pass. names.txt's train split has 182,625 rows but
    5k (context 3) to 51k (context 10) distinct contexts, and every evaluation (the dev loss at
    each validation, the three splits at the end) costs that much less (BENCHMARKS.md).
    """

    contexts: torch.Tensor  # (distinct, block_size), long
    # (distinct, vocab), int32: an integer tensor, which Lightning's `16-true`/`bf16-true`
    # input conversion leaves alone (counts above 65,504 would overflow in float16).
    counts: torch.Tensor
    rows: int

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, vocab_size: int) -> DistinctContexts:
        if len(x) == 0:
            return cls(x, torch.zeros(0, vocab_size, dtype=torch.int32, device=x.device), 0)
        if x.shape[1] > 0 and vocab_size ** x.shape[1] < 2**62:
            # A context as one integer in base `vocab`: a 1-D unique is ten times faster than
            # torch.unique(dim=0), which sorts whole rows. A sum, not `x @ powers`: CUDA has no
            # int64 matrix product.
            powers = vocab_size ** torch.arange(x.shape[1] - 1, -1, -1, device=x.device)
            _, row_context = torch.unique((x * powers).sum(1), return_inverse=True)
            first_row = torch.full((int(row_context.max()) + 1,), len(x), device=x.device)
            first_row.scatter_reduce_(0, row_context, torch.arange(len(x), device=x.device), "amin")
            contexts = x[first_row]
        else:
            contexts, row_context = torch.unique(x, dim=0, return_inverse=True)
        counts = torch.zeros(len(contexts), vocab_size, dtype=torch.int32, device=x.device)
        counts.index_put_((row_context, y), torch.ones_like(y, dtype=torch.int32), accumulate=True)
        return cls(contexts, counts, len(x))

    def to(self, device: torch.device) -> DistinctContexts:
        return DistinctContexts(self.contexts.to(device), self.counts.to(device), self.rows)


class SplitBatches:
    """A whole split for evaluation, in batches of distinct contexts with their target counts."""

    def __init__(self, split: DistinctContexts, batch_size: int) -> None:
        self.split, self.batch_size = split, batch_size

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.split.contexts) / self.batch_size))

    def __iter__(self) -> Iterator[Batch]:
        contexts, counts = self.split.contexts, self.split.counts
        for start in range(0, len(contexts), self.batch_size):
            yield contexts[start : start + self.batch_size], counts[start : start + self.batch_size]
