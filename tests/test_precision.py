"""Mixed precision goes through Lightning's precision plugin and optimises like 32-bit.

On CPU Lightning turns `precision="16-mixed"` into bf16-mixed, so the loss-scaled path is
exercised with an explicit `MixedPrecision("16-mixed", "cpu", scaler=GradScaler("cpu"))`:
fp16 autocast and a real GradScaler, as on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import train_cli
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.plugins.precision import Precision

from makemore_sweep.config.schema import DataConfig, RunConfig
from makemore_sweep.data.batches import StepPlan
from makemore_sweep.data.datamodule import NamesDataModule
from makemore_sweep.model.language_model import LanguageModelTask

NETWORK = {"name": "mlp_bn", "n_embd": 10, "n_hidden": 64, "n_layers": 1, "batchnorm": True}
STEPS = 40


class PlainPrecisionThroughThePlugin(Precision):
    """32-bit, but not Lightning's own class: the module takes the plugin path, not its fast path."""


def fit(
    names_path: Path, steps: int = STEPS, grad_clip: float = 0.0, **trainer_args: object
) -> tuple[LanguageModelTask, L.Trainer]:
    """SGD for `steps` optimiser steps (10 per Lightning call) with the run's own module and data."""
    L.seed_everything(0, verbose=False)
    data = asdict(DataConfig(path=str(names_path), block_size=3, batch_size=32, download=False))
    datamodule = NamesDataModule(**{k: v for k, v in data.items() if k != "_target_"})
    datamodule.setup()
    datamodule.step_plan = StepPlan(
        max_steps=steps, val_every_n_steps=steps, steps_per_execution=min(10, steps)
    )
    module = LanguageModelTask(
        vocab=list(datamodule.splits.vocab.chars),
        block_size=3,
        network=NETWORK,
        optim={"name": "sgd", "lr": 0.1, "schedule": "constant", "grad_clip": grad_clip},
        max_steps=steps,
        divergence_loss=RunConfig().divergence_loss,
    )
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **trainer_args,  # type: ignore[arg-type]
    )
    trainer.fit(module, datamodule=datamodule)
    return module, trainer


def initial_parameters() -> dict[str, torch.Tensor]:
    L.seed_everything(0, verbose=False)
    module = LanguageModelTask(
        vocab=list(".abcdefghijklmnopqrstuvwxyz"),
        block_size=3,
        network=NETWORK,
        optim={},
        max_steps=1,
        divergence_loss=RunConfig().divergence_loss,
    )
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def fp16_scaled(init_scale: float = 2.0**16) -> MixedPrecision:
    return MixedPrecision(
        "16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale)
    )


def largest_gap(a: LanguageModelTask, b: LanguageModelTask) -> float:
    """Largest parameter difference, relative to how far the parameters moved in training."""
    start = initial_parameters()
    gaps = []
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        moved = (pb.detach() - start[name]).abs().max()
        gaps.append(float((pa.detach().float() - pb.detach()).abs().max() / moved))
    return max(gaps)


@pytest.mark.parametrize("grad_clip", [0.0, 1.0], ids=["no-clip", "clip-1"])
def test_loss_scaled_fp16_steps_like_32_bit(names_path: Path, grad_clip: float) -> None:
    """The scaler unscales before clipping and stepping: SGD moves the weights as in 32-bit, not 65536 times as far."""
    full, full_trainer = fit(names_path, grad_clip=grad_clip, precision="32-true")
    scaled, scaled_trainer = fit(names_path, grad_clip=grad_clip, plugins=[fp16_scaled()])
    assert scaled_trainer.precision == "16-mixed"
    assert scaled_trainer.global_step == full_trainer.global_step == STEPS
    # fp16 forward passes round at ~1e-3; a gradient left scaled would move the weights 65536× too far.
    assert largest_gap(scaled, full) < 0.01


def test_overflowing_fp16_steps_are_skipped_and_the_scale_backs_off(names_path: Path) -> None:
    """With a loss scale of 2^40 every fp16 gradient overflows: no step may touch the weights."""
    plugin = fp16_scaled(init_scale=2.0**40)
    module, trainer = fit(names_path, steps=5, plugins=[plugin])
    assert trainer.global_step == 5  # skipped steps still count, as in Lightning's own loop
    assert (
        plugin.scaler is not None and plugin.scaler.get_scale() == 2.0**35
    )  # halved after each overflow
    for name, value in initial_parameters().items():
        assert torch.equal(dict(module.named_parameters())[name].detach(), value), name


def test_the_32_bit_fast_path_steps_exactly_like_lightnings_own_step(names_path: Path) -> None:
    fast, fast_trainer = fit(names_path, grad_clip=1.0, precision="32-true")
    public, public_trainer = fit(
        names_path, grad_clip=1.0, plugins=[PlainPrecisionThroughThePlugin()]
    )
    assert fast._plain_steps and not public._plain_steps
    assert fast_trainer.global_step == public_trainer.global_step == STEPS
    for (name, a), (_, b) in zip(fast.named_parameters(), public.named_parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name


@pytest.mark.slow
def test_bf16_mixed_trains_to_the_dev_loss_of_32_bit(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    """`trainer.precision=bf16-mixed` through makemore-train: bf16 autocast on CPU, same dev loss up to rounding."""
    dev = {}
    for precision in ("32-true", "bf16-mixed"):
        run_dir = tmp_path / precision
        args = [
            f"data.path={names_path}",
            "trainer.max_steps=500",
            "trainer.val_every_n_steps=250",
            "logger=csv",
            f"trainer.precision={precision}",
            f"hydra.run.dir={run_dir}",
        ]
        result = train_cli(args, tmp_path, run_env)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["steps"] == 500 and metrics["state"] == "completed"
        dev[precision] = [loss for _, loss in metrics["val_history"]]
    assert dev["bf16-mixed"][-1] < 2.4  # it trained: uniform guessing costs ln 27 ≈ 3.30
    assert dev["bf16-mixed"] == pytest.approx(dev["32-true"], abs=0.01)
