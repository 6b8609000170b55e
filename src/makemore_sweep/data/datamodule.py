"""LightningDataModule over the contract split, with batches drawn from tensors built once."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from makemore_sweep.data.batches import Batch, RandomBatchChunks, SplitBatches, StepPlan
from makemore_sweep.data.corpus import SplitTensors, load_splits
from makemore_sweep.data.names_file import ensure_names_file


class NamesDataModule(L.LightningDataModule):
    """names.txt → vocabulary → 80/10/10 word split → (X, Y) context windows per split.

    Built from `data.*` (DataConfig in config/schema.py, where the defaults are).
    """

    def __init__(
        self,
        path: str,
        block_size: int,
        batch_size: int,
        eval_batch_size: int,
        split_seed: int,
        download: bool,
        fractions: tuple[float, float, float] | list[float],
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
