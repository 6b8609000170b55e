#!/usr/bin/env python
"""Per-step cost: the framework vs a hand-written loop vs plain Lightning, side by side.

Same model (lecture BN-MLP: embedding 10, hidden 200, context 3), same batch (32), SGD, CPU.

1. Training steps only: start-up and validation are excluded; each contender runs `--rounds`
   times, interleaved, and the median µs/step is reported with the ratio to the hand loop.
2. Whole runs, validation included (issue 19): the framework's run (data module, module,
   Trainer with RunMonitor, RandomStateKeeper, the shipped ModelCheckpoint writing best and
   last at every validation, CSV logger) against a hand-written loop that also evaluates the
   whole dev split (eval mode, chunks of 4096) every `--val-every` steps. Each is timed whole
   for `--short` and `--long` steps; (T(long) - T(short)) / (long - short) removes the start-up
   and leaves the per-step cost with validation included. Goal: ≤ 1.15× the hand loop.

    python scripts/bench_step.py [--steps 3000] [--rounds 3] [--short 500 --long 4500] [--val-every 250]
        [--threads N] [--names FILE (default: $MAKEMORE_NAMES, data/ or ../shared/data/)]
    python scripts/bench_step.py --steps 200 --rounds 1 --short 250 --long 750   # a quick check
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

from makemore_sweep.config.instantiation import build as instantiate
from makemore_sweep.config.schema import DataConfig, RunConfig, TrainerConfig
from makemore_sweep.data.batches import StepPlan
from makemore_sweep.data.corpus import load_splits
from makemore_sweep.data.datamodule import NamesDataModule
from makemore_sweep.data.names_file import checkout_names_file
from makemore_sweep.model.language_model import LanguageModelTask
from makemore_sweep.model.networks import MLPLanguageModel
from makemore_sweep.training.random_state import RandomStateKeeper
from makemore_sweep.training.run_monitor import RunMonitor
from makemore_sweep.training.trainer_factory import build_trainer

BATCH = 32
WARMUP = 200
SPEC = {"n_embd": 10, "n_hidden": 200, "n_layers": 1, "batchnorm": True}
# The framework's dev-loss chunk; the hand loop evaluates in the same chunks.
EVAL_BATCH = DataConfig().eval_batch_size
CALLBACKS_YAML = Path(__file__).resolve().parents[1] / "conf" / "callbacks" / "default.yaml"


def hand_written(x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """The lecture's loop: sample a batch, forward, backward, SGD update with the step schedule."""
    model = MLPLanguageModel(27, 3, **SPEC)
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
        self.net = MLPLanguageModel(27, 3, **SPEC)

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
    trainer_cfg = TrainerConfig(accelerator="cpu")
    plan = StepPlan(
        max_steps=total,
        val_every_n_steps=total,
        steps_per_execution=trainer_cfg.steps_per_execution,
    )
    data = asdict(DataConfig(path=str(names), block_size=3, batch_size=BATCH))
    datamodule = NamesDataModule(**{k: v for k, v in data.items() if k != "_target_"})
    datamodule.setup()
    datamodule.step_plan = plan
    module = LanguageModelTask(
        vocab=list(datamodule.splits.vocab.chars),
        block_size=3,
        network={"name": "mlp_bn", **SPEC},
        optim={"name": "sgd", "lr": 0.1, "schedule": "step"},
        max_steps=total,
        divergence_loss=RunConfig().divergence_loss,
    )
    timer = StepTimer()
    trainer = build_trainer(
        trainer_cfg, plan, [CSVLogger(root, name="framework")], [RunMonitor(), timer], root
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.per_step


@torch.no_grad()
def hand_dev_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()  # BatchNorm with its running statistics
    total = torch.zeros(())
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        total += F.cross_entropy(logits, y[start : start + EVAL_BATCH], reduction="sum")
    model.train()
    return float(total) / len(x)


def hand_whole_run(
    train: tuple[torch.Tensor, torch.Tensor],
    dev: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    val_every: int,
) -> float:
    """Seconds of a whole hand-written run: build, train, dev loss every `val_every` steps and at the end."""
    started = time.perf_counter()
    x, y = train
    model = MLPLanguageModel(27, 3, **SPEC)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    best = float("inf")
    for i in range(steps):
        ix = torch.randint(0, len(x), (BATCH,))
        loss = F.cross_entropy(model(x[ix]), y[ix])
        for group in opt.param_groups:
            group["lr"] = 0.1 if i < steps // 2 else 0.01
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (i + 1) % val_every == 0 or i + 1 == steps:
            best = min(best, hand_dev_loss(model, *dev))
    return time.perf_counter() - started


def framework_whole_run(names: Path, steps: int, val_every: int, root: Path) -> float:
    """Seconds of the framework's run as run_training builds it, from the data module to the end
    of fit: RunMonitor, RandomStateKeeper, the shipped checkpoint callback (best and last at every
    validation) and the CSV logger; the final evaluation and metrics.json are not included."""
    started = time.perf_counter()
    trainer_cfg = TrainerConfig(accelerator="cpu", max_steps=steps, val_every_n_steps=val_every)
    data = asdict(DataConfig(path=str(names), block_size=3, batch_size=BATCH))
    datamodule = NamesDataModule(**{k: v for k, v in data.items() if k != "_target_"})
    datamodule.setup()
    datamodule.step_plan = StepPlan(
        max_steps=steps,
        val_every_n_steps=min(val_every, steps),
        steps_per_execution=min(trainer_cfg.steps_per_execution, val_every, steps),
    )
    module = LanguageModelTask(
        vocab=list(datamodule.splits.vocab.chars),
        block_size=3,
        network={"name": "mlp_bn", **SPEC},
        optim={"name": "sgd", "lr": 0.1, "schedule": "step"},
        max_steps=steps,
        divergence_loss=RunConfig().divergence_loss,
    )
    run_dir = Path(tempfile.mkdtemp(dir=root))
    checkpoint = OmegaConf.load(CALLBACKS_YAML).checkpoint
    checkpoint.dirpath = str(
        run_dir / "checkpoints"
    )  # conf says ${hydra:runtime.output_dir}/checkpoints
    csv = CSVLogger(
        run_dir, name="csv", version="", flush_logs_every_n_steps=1
    )  # conf/logger/csv.yaml
    callbacks = [RunMonitor(), RandomStateKeeper(), instantiate(checkpoint)]
    trainer = build_trainer(trainer_cfg, datamodule.step_plan, [csv], callbacks, run_dir)
    trainer.fit(module, datamodule=datamodule)
    return time.perf_counter() - started


def whole_run_rounds(
    args: argparse.Namespace,
    train: tuple[torch.Tensor, torch.Tensor],
    dev: tuple[torch.Tensor, torch.Tensor],
    root: Path,
) -> dict[str, list[float]]:
    """Per-step seconds with validation, (T(long) - T(short)) / (long - short), per round."""
    per_step: dict[str, list[float]] = {"hand-written loop": [], "makemore-sweep": []}
    span = args.long - args.short
    # An untimed run first: the data module's split cache and Lightning's first-fit imports
    # would otherwise land on the first short run only, and differencing would not remove them.
    framework_whole_run(args.names, min(args.val_every, args.short), args.val_every, root)
    for _ in range(args.rounds):
        hand = [hand_whole_run(train, dev, n, args.val_every) for n in (args.short, args.long)]
        per_step["hand-written loop"].append((hand[1] - hand[0]) / span)
        ours = [
            framework_whole_run(args.names, n, args.val_every, root)
            for n in (args.short, args.long)
        ]
        per_step["makemore-sweep"].append((ours[1] - ours[0]) / span)
    return per_step


def print_table(title: str, results: dict[str, list[float]]) -> float:
    """Print median µs/step and the ratio to the hand loop; returns the framework's ratio."""
    hand = statistics.median(results["hand-written loop"])
    print(title)
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"{name:18s} {median * 1e6:8.1f} µs/step   ratio {median / hand:5.2f}   (rounds: "
            + ", ".join(f"{v * 1e6:.0f}" for v in values)
            + ")"
        )
    return statistics.median(results["makemore-sweep"]) / hand


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
    parser.add_argument("--short", type=int, default=500, help="steps of the short whole run")
    parser.add_argument("--long", type=int, default=4500, help="steps of the long whole run")
    parser.add_argument("--val-every", type=int, default=250, help="dev loss every this many steps")
    args = parser.parse_args()
    if not 0 < args.short < args.long:
        parser.error("--short and --long: need 0 < short < long")
    if args.names is None:
        parser.error("no names.txt in $MAKEMORE_NAMES, data/ or ../shared/data/; pass --names FILE")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    splits = load_splits(args.names, block_size=3)
    x, y = splits.train
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
        whole = whole_run_rounds(args, splits.train, splits.val, Path(tmp))
    threads = torch.get_num_threads()
    ratio = print_table(
        f"per-step cost, batch {BATCH}, {args.steps} steps x {args.rounds} rounds, torch threads {threads}",
        results,
    )
    print(f"framework / hand-written ratio: {ratio:.2f}")
    whole_ratio = print_table(
        f"\nwhole run with validation, batch {BATCH}, dev loss every {args.val_every} steps, "
        f"(T({args.long}) - T({args.short})) / {args.long - args.short} steps x {args.rounds} rounds, "
        f"torch threads {threads}",
        whole,
    )
    print(
        f"framework / hand-written ratio, whole run with validation: {whole_ratio:.2f} "
        f"(goal ≤ 1.15: {'met' if whole_ratio <= 1.15 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
