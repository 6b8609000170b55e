#!/usr/bin/env python
"""Per-step cost: the framework vs a hand-written loop vs plain Lightning, side by side.

Same model (lecture BN-MLP: embedding 10, hidden 200, context 3), same batch (32), SGD, CPU.
Start-up and validation are excluded; each contender runs `--rounds` times, interleaved, and
the median µs/step is reported with the ratio to the hand-written loop.

    python scripts/bench_step.py [--steps 3000] [--rounds 3] [--names FILE (default: $MAKEMORE_NAMES, data/ or ../shared/data/)]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from makemore_sweep.config.schema import DataConfig, ModelConfig, RunConfig, TrainerConfig
from makemore_sweep.data.batches import StepPlan
from makemore_sweep.data.corpus import load_splits
from makemore_sweep.data.datamodule import NamesDataModule
from makemore_sweep.data.names_file import checkout_names_file
from makemore_sweep.model.language_model import LanguageModelTask
from makemore_sweep.model.networks import MLPLanguageModel
from makemore_sweep.training.run_monitor import RunMonitor
from makemore_sweep.training.trainer_factory import build_trainer

BATCH = 32
WARMUP = 200
SPEC = ModelConfig(name="mlp_bn", n_embd=10, n_hidden=200, n_layers=1, batchnorm=True)


def hand_written(x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """The lecture's loop: sample a batch, forward, backward, SGD update with the step schedule."""
    model = MLPLanguageModel(27, 3, SPEC)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start = 0.0
    for i in range(WARMUP + steps):
        if i == WARMUP:
            start = time.perf_counter()
        ix = torch.randint(0, len(x), (BATCH,))
        loss = F.cross_entropy(model(x[ix]), y[ix])
        for group in opt.param_groups:
            group["lr"] = 0.1 if i < (WARMUP + steps) // 2 else 0.01
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


class StepTimer(L.Callback):
    """Times the optimiser steps after the warm-up; validation is never run in these contenders."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.start_step = 0
        self.per_step = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if self.start is None and trainer.global_step >= WARMUP:
            self.start, self.start_step = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer: L.Trainer, *args: object) -> None:
        assert self.start is not None
        self.per_step = (time.perf_counter() - self.start) / (trainer.global_step - self.start_step)


class PlainLightning(L.LightningModule):
    """What a Lightning user writes first: automatic optimisation, DataLoader over a TensorDataset."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MLPLanguageModel(27, 3, SPEC)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def plain_lightning(x: torch.Tensor, y: torch.Tensor, steps: int, root: Path) -> float:
    timer = StepTimer()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    trainer = L.Trainer(
        max_steps=WARMUP + steps,
        logger=CSVLogger(root, name="plain"),
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        log_every_n_steps=50,
    )
    trainer.fit(PlainLightning(), loader)
    return timer.per_step


def framework(names: Path, steps: int, root: Path) -> float:
    """The real components of a makemore-train run: datamodule, module, trainer factory, monitor, CSV logger."""
    total = WARMUP + steps
    trainer_cfg = OmegaConf.structured(TrainerConfig)
    plan = StepPlan(
        max_steps=total,
        val_every_n_steps=total,
        steps_per_execution=int(trainer_cfg.steps_per_execution),
    )
    data = asdict(DataConfig(path=str(names), block_size=3, batch_size=BATCH))
    datamodule = NamesDataModule(**{k: v for k, v in data.items() if k != "_target_"})
    datamodule.setup()
    datamodule.step_plan = plan
    module = LanguageModelTask(
        vocab=list(datamodule.splits.vocab.chars),
        block_size=3,
        network=asdict(SPEC),
        optim={"name": "sgd", "lr": 0.1, "schedule": "step"},
        max_steps=total,
        divergence_loss=RunConfig().divergence_loss,
    )
    timer = StepTimer()
    trainer_cfg.accelerator = "cpu"
    trainer = build_trainer(
        trainer_cfg, plan, [CSVLogger(root, name="framework")], [RunMonitor(), timer], root
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.per_step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--names", type=Path, default=checkout_names_file(Path(__file__).resolve().parents[1])
    )
    args = parser.parse_args()
    if args.names is None:
        parser.error("no names.txt in $MAKEMORE_NAMES, data/ or ../shared/data/; pass --names FILE")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = load_splits(args.names, block_size=3).train
    results: dict[str, list[float]] = {
        "hand-written loop": [],
        "plain Lightning": [],
        "makemore-sweep": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            results["hand-written loop"].append(hand_written(x, y, args.steps))
            results["plain Lightning"].append(plain_lightning(x, y, args.steps, Path(tmp)))
            results["makemore-sweep"].append(framework(args.names, args.steps, Path(tmp)))
    hand = statistics.median(results["hand-written loop"])
    print(
        f"per-step cost, batch {BATCH}, {args.steps} steps x {args.rounds} rounds, torch threads {torch.get_num_threads()}"
    )
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"{name:18s} {median * 1e6:8.1f} µs/step   ratio {median / hand:5.2f}   (rounds: "
            + ", ".join(f"{v * 1e6:.0f}" for v in values)
            + ")"
        )
    print(
        f"framework / hand-written ratio: {statistics.median(results['makemore-sweep']) / hand:.2f}"
    )


if __name__ == "__main__":
    main()
