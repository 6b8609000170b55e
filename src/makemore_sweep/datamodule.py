"""LightningDataModule over the contract split, with batches drawn from tensors built once."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch

from makemore_sweep.dataset import SplitTensors, load_splits
from makemore_sweep.names_file import ensure_names_file
from makemore_sweep.trainer_setup import StepPlan

Batch = tuple[torch.Tensor, torch.Tensor]


class RandomBatchChunks:
    """Training batches sampled with replacement (as in the lectures), grouped in chunks.

    Each item is a pair of tensors shaped (k, batch, block) and (k, batch): k optimiser steps
    that the module runs inside one Lightning step, so the trainer's per-step overhead is paid
    once per chunk (like Keras' steps_per_execution). One pass ("epoch") covers
    `steps_per_epoch` steps, the validation interval; no pass goes beyond `max_steps`.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        steps_per_epoch: int,
        steps_per_execution: int,
        max_steps: int,
        start_step: int = 0,
    ) -> None:
        self.x, self.y = x, y
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
            index = torch.randint(0, n, (k, self.batch_size), device=self.x.device)
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


class NamesDataModule(L.LightningDataModule):
    """names.txt → vocabulary → 80/10/10 word split → (X, Y) context windows per split."""

    def __init__(
        self,
        path: str = "data/names.txt",
        block_size: int = 3,
        batch_size: int = 32,
        eval_batch_size: int = 32768,
        split_seed: int = 42,
        download: bool = True,
        fractions: tuple[float, float, float] | list[float] = (0.8, 0.1, 0.1),
    ) -> None:
        super().__init__()
        self.path = path
        self.block_size = block_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        # Set by the runner once the number of steps is known (it may depend on the data).
        self.step_plan = StepPlan(max_steps=10_000, val_every_n_steps=1_000, steps_per_execution=25)
        self.split_seed = split_seed
        self.fractions = (float(fractions[0]), float(fractions[1]), float(fractions[2]))
        self.download = download
        self._splits: SplitTensors | None = None

    def prepare_data(self) -> None:
        if self.download:
            ensure_names_file(self.path)

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            path = ensure_names_file(self.path) if self.download else Path(self.path)
            self._splits = load_splits(path, self.block_size, seed=self.split_seed, fractions=self.fractions)

    @property
    def splits(self) -> SplitTensors:
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    def _on_device(self, pair: Batch) -> Batch:
        """Place a split on the trainer's device once, so batches are sliced there."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return pair[0].to(device), pair[1].to(device)

    def train_dataloader(self) -> RandomBatchChunks:
        x, y = self._on_device(self.splits.train)
        start = self.trainer.global_step if self.trainer is not None else 0
        return RandomBatchChunks(
            x,
            y,
            batch_size=self.batch_size,
            steps_per_epoch=self.step_plan.val_every_n_steps,
            steps_per_execution=self.step_plan.steps_per_execution,
            max_steps=self.step_plan.max_steps,
            start_step=start,
        )

    def val_dataloader(self) -> SplitBatches:
        return SplitBatches(*self._on_device(self.splits.val), self.eval_batch_size)

    def test_dataloader(self) -> SplitBatches:
        return SplitBatches(*self._on_device(self.splits.test), self.eval_batch_size)
