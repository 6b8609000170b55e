"""LightningDataModule over the contract split, with batches drawn from tensors built once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from makemore_sweep.data.batches import (
    Batch,
    DistinctContexts,
    RandomBatchChunks,
    SplitBatches,
    StepPlan,
    generator_continuing_global,
)
from makemore_sweep.data.corpus import SplitTensors, load_splits
from makemore_sweep.data.names_file import ensure_names_file

# A sweep worker runs many trials in one process: their data is read and windowed once per
# file version and context length, not once per trial. The tensors are only ever read.
_SPLITS: dict[tuple[object, ...], SplitTensors] = {}
# Enough for every context length of a typical search (3-10: about 100 MB at most); the least
# recently used goes first.
_SPLITS_KEPT = 8


def cached_splits(
    path: Path, block_size: int, seed: int, fractions: tuple[float, float, float]
) -> SplitTensors:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, block_size, seed, fractions)
    splits = _SPLITS.pop(key, None)  # re-inserted below: the dict's order is the recency order
    if splits is None:
        while len(_SPLITS) >= _SPLITS_KEPT:
            _SPLITS.pop(next(iter(_SPLITS)))
        splits = load_splits(path, block_size, seed=seed, fractions=fractions)
    _SPLITS[key] = splits
    return splits


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
        # The training sampler's own random stream, created with the first training loader
        # and kept across loaders; its state goes into checkpoints (`state_dict`).
        self.sampler_generator: torch.Generator | None = None
        self._restored_sampler_state: torch.Tensor | None = None

    def prepare_data(self) -> None:
        if self.download:
            ensure_names_file(self.path)

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            path = ensure_names_file(self.path) if self.download else Path(self.path)
            self._splits = cached_splits(path, self.block_size, self.split_seed, self.fractions)

    @property
    def splits(self) -> SplitTensors:
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    def _on_device(self, pair: Batch) -> Batch:
        """Place a split on the trainer's device once, so batches are sliced there."""
        device = (
            self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        )
        return pair[0].to(device), pair[1].to(device)

    def train_dataloader(self) -> RandomBatchChunks:
        x, y = self._on_device(self.splits.train)
        start = self.trainer.global_step if self.trainer is not None else 0
        if self.sampler_generator is None or self.sampler_generator.device != x.device:
            self.sampler_generator = generator_continuing_global(x.device)
            if self._restored_sampler_state is not None:
                self.sampler_generator.set_state(self._restored_sampler_state)
        return RandomBatchChunks(
            x,
            y,
            batch_size=self.batch_size,
            steps_per_epoch=self.step_plan.val_every_n_steps,
            steps_per_execution=self.step_plan.steps_per_execution,
            max_steps=self.step_plan.max_steps,
            generator=self.sampler_generator,
            start_step=start,
        )

    def val_dataloader(self) -> SplitBatches:
        return SplitBatches(self._eval_on_device("val"), self.eval_batch_size)

    def test_dataloader(self) -> SplitBatches:
        return SplitBatches(self._eval_on_device("test"), self.eval_batch_size)

    def _eval_on_device(self, name: str) -> DistinctContexts:
        device = (
            self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        )
        return self.splits.evaluation_split(name).to(device)

    # -- checkpoints: the sampler's random state, so a resumed run draws the batches it would have
    def state_dict(self) -> dict[str, Any]:
        if self.sampler_generator is None:
            return {}
        return {"sampler_rng_state": self.sampler_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_sampler_state = state_dict.get("sampler_rng_state")
        if self._restored_sampler_state is not None and self.sampler_generator is not None:
            self.sampler_generator.set_state(self._restored_sampler_state)
