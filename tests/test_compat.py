"""The private library names in makemore_sweep.compat still exist and still do what we use them for.

Each test fails loudly when a new release of the library renames, removes or changes one of them.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer

from makemore_sweep.compat.hydra import parse_hydra_command_line
from makemore_sweep.compat.lightning import AFTER_STEP_HOOK, BEFORE_STEP_HOOK, counted_raw_step

# -- Lightning ---------------------------------------------------------------------------------


class ThreeStepsPerBatch(L.LightningModule):
    """Manual optimisation stepping only through `counted_raw_step`, three times per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.batches = 0

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        optimizer = self.optimizers()
        assert isinstance(optimizer, LightningOptimizer)
        for _ in range(3):
            optimizer.zero_grad()
            (self.weight * batch).sum().backward()
            counted_raw_step(optimizer)
        self.batches += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.weight], lr=0.1)


def test_lightning_optimizer_still_has_the_step_counting_hooks() -> None:
    optimizer = LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1))
    assert callable(getattr(optimizer, BEFORE_STEP_HOOK))
    assert callable(getattr(optimizer, AFTER_STEP_HOOK))


def test_raw_steps_between_the_hooks_count_as_optimiser_steps() -> None:
    """`trainer.global_step` (and so `max_steps`) counts the raw steps taken between the two hooks."""
    module = ThreeStepsPerBatch()
    trainer = L.Trainer(
        max_steps=6,
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        module, train_dataloaders=torch.utils.data.DataLoader(torch.ones(10, 1), batch_size=1)
    )
    assert trainer.global_step == 6
    assert (
        module.batches == 2
    )  # stopped by max_steps after 6 counted steps, not by the end of the data
    assert float(module.weight) == pytest.approx(
        1.0 - 6 * 0.1
    )  # every counted step was a real step


# -- Hydra ---------------------------------------------------------------------------------------


def test_hydra_command_line_parser_splits_flags_from_overrides() -> None:
    parsed = parse_hydra_command_line(
        ["-m", "model.n_hidden=100,200", "--cfg", "job", "+model.x=1"]
    )
    assert parsed is not None
    assert parsed.overrides == ["model.n_hidden=100,200", "+model.x=1"]
    assert parsed.multirun and parsed.cfg == "job"
    assert parsed.config_name is None and parsed.config_dir is None and not parsed.help


def test_hydra_command_line_parser_leaves_refusals_and_exits_to_hydra() -> None:
    assert parse_hydra_command_line(["--cfg", "nosuch"]) is None
    assert parse_hydra_command_line(["--version"]) is None
