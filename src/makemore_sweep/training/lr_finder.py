"""`makemore-train task=lr_find`: the learning-rate finder of makemore part 2.

One optimiser step per rate, the rates spaced exponentially from `task.min_lr` to
`task.max_lr`; the loss of each step against its rate shows where learning is fastest before
it blows up. A plain loop over our own network and data rather than Lightning's `Tuner.lr_find`:
that tuner drives automatic optimisation through an LR scheduler, while our module optimises
manually and sets the rate itself (see `module.py`), so the loop here is shorter than adapting it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from rich.progress import track

from makemore_sweep.config.network_spec import network_of
from makemore_sweep.config.schema import LrFindTask, RunConfig
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.language_model import LanguageModelTask
from makemore_sweep.model.network_interface import is_counted
from makemore_sweep.training.loggers import build_loggers, finish_loggers, log_run_config
from makemore_sweep.training.run import build_datamodule, build_module, configure_threads
from makemore_sweep.training.trainer_factory import progress_bar_wanted

LR_FIND_PNG = "lr_find.png"
LR_FIND_CSV = "lr_find.csv"
LR_FIND_JSON = "lr_find.json"


@dataclass(frozen=True)
class LRFinderResult:
    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float  # the rate of the lowest smoothed loss
    steps_planned: int

    @property
    def steps_run(self) -> int:
        return len(self.losses)


def exponential_rates(min_lr: float, max_lr: float, num_steps: int) -> list[float]:
    """`num_steps` rates from `min_lr` to `max_lr`, evenly spaced in log10 (the lecture's `10**lre`)."""
    return torch.logspace(
        math.log10(min_lr), math.log10(max_lr), num_steps, dtype=torch.float64
    ).tolist()


def smooth(losses: list[float], window: int) -> list[float]:
    """Centred moving average (shorter near the ends), so the curve is not shifted towards higher rates."""
    values = np.asarray(losses, dtype=np.float64)
    half = max(window, 1) // 2
    sums = np.concatenate([[0.0], np.cumsum(values)])
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half), min(len(values), i + half + 1)
        out.append(float((sums[hi] - sums[lo]) / (hi - lo)))
    return out


def suggest_rate(rates: list[float], smoothed: list[float]) -> float:
    """The rate at the bottom of the valley of the smoothed loss, as the lecture picks it.

    On names.txt this gives about 0.2 for the lecture's SGD at batch 32 (the lecture settles on
    0.1) and about 0.007 for AdamW at batch 512 (the tuned default is 0.01); "a tenth of the
    minimum" rules from other finders came out 5-10x too low for these models.
    """
    return rates[int(np.argmin(smoothed))]


def sweep_rates(
    module: LanguageModelTask,
    train: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    rates: list[float],
    window: int,
    stop_factor: float,
    seed: int,
) -> list[float]:
    """One step per rate on a random batch; stops early once the loss has clearly blown up."""
    x, y = train
    optimizer = module.configure_optimizers()
    generator = torch.Generator().manual_seed(seed)
    clip = module.optim_spec.grad_clip
    module.net.train()
    losses: list[float] = []
    best = math.inf
    steps = (
        track(rates, description="lr finder", transient=True) if progress_bar_wanted() else rates
    )
    for lr in steps:
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(0, len(x), (batch_size,), generator=generator)
        loss = F.cross_entropy(module.net(x[index]), y[index])
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(module.net.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
        recent = float(np.mean(losses[-window:]))
        best = min(best, recent)
        if len(losses) > window and recent > stop_factor * best:
            break
    return losses


def plot_lr_find(result: LRFinderResult, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure  # a bare Figure needs no GUI backend

    figure = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    rates = result.rates[: result.steps_run]
    ax.plot(rates, result.losses, color="#9bb7d4", linewidth=0.8, label="loss of each step")
    ax.plot(rates, result.smoothed, color="#1f4e79", linewidth=2, label="smoothed")
    ax.axvline(
        result.suggested_lr,
        color="#c0392b",
        linestyle="--",
        label=f"lowest smoothed loss: lr {result.suggested_lr:.3g}",
    )
    ax.set_xscale("log")
    # From the valley floor to the starting loss: the blow-up at the end would flatten the valley.
    low, high = min(result.smoothed), max(result.losses[:10] + [min(result.smoothed) + 0.5])
    ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    figure.savefig(path)
    return path


def write_lr_find_files(result: LRFinderResult, run_dir: Path, extra: dict[str, Any]) -> None:
    with (run_dir / LR_FIND_CSV).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        for step, (lr, loss, smoothed) in enumerate(
            zip(result.rates, result.losses, result.smoothed)
        ):
            writer.writerow([step, lr, loss, smoothed])
    summary = {k: v for k, v in asdict(result).items() if k not in ("rates", "losses", "smoothed")}
    summary.update(steps_run=result.steps_run, **extra)
    (run_dir / LR_FIND_JSON).write_text(json.dumps(summary, indent=2) + "\n")


def run_lr_find(cfg: DictConfig, run: RunConfig, run_dir: Path) -> LRFinderResult:
    """Run the finder as configured; write lr_find.png/.csv/.json in `run_dir` and log them.

    `run` is `cfg` checked and typed by the entry point (its `task` an LrFindTask); `cfg` is only
    what W&B logs as the run's config.
    """
    task = run.task
    assert isinstance(task, LrFindTask)
    configure_threads(run.threads)
    L.seed_everything(run.seed, verbose=False)
    datamodule = build_datamodule(run)
    splits = datamodule.splits
    print(splits.summary.line(), flush=True)
    run.batch_fits(len(splits.train[0]))
    module = build_module(run, vocab=list(splits.vocab.chars), max_steps=task.num_steps)
    if is_counted(module.net):
        raise ConfigError(
            f"task=lr_find needs a trained network: model={network_of(run).label} is counted, not trained."
        )

    rates = exponential_rates(task.min_lr, task.max_lr, task.num_steps)
    window = max(3, round(task.smoothing_window * len(rates)))
    losses = sweep_rates(
        module, splits.train, run.data.batch_size, rates, window, task.stop_factor, run.seed
    )
    if len(losses) < window:
        raise ConfigError(
            f"task.min_lr={task.min_lr} is too high: the loss blew up within {len(losses)} steps; lower it."
        )
    smoothed = smooth(losses, window)
    result = LRFinderResult(
        rates, losses, smoothed, suggest_rate(rates, smoothed), steps_planned=len(rates)
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    title = f"learning-rate finder: {network_of(run).label}, {run.optim.name}, batch {run.data.batch_size}"
    png = plot_lr_find(result, run_dir / LR_FIND_PNG, title)
    write_lr_find_files(
        result, run_dir, {"optimizer": run.optim.name, "batch_size": run.data.batch_size}
    )
    log_lr_find(cfg, run, result, png)
    print(
        f"lr finder: lowest smoothed loss {min(smoothed):.3f} at lr {result.suggested_lr:.3g} "
        f"({result.steps_run} of {len(rates)} steps)\n"
        f"suggested rate: optim.lr={result.suggested_lr:.3g}\n"
        f"plot: {png}",
        flush=True,
    )
    return result


def log_lr_find(cfg: DictConfig, run: RunConfig, result: LRFinderResult, png: Path) -> None:
    """The curve, the plot and the suggestion to every logger (W&B job type `lr_find`)."""
    from lightning.pytorch.loggers import WandbLogger

    loggers = build_loggers(run.logger)
    log_run_config(loggers, cfg)
    for logger in loggers:
        for step, (lr, loss, smoothed) in enumerate(
            zip(result.rates, result.losses, result.smoothed)
        ):
            logger.log_metrics(
                {"lr_find/lr": lr, "lr_find/loss": loss, "lr_find/smoothed_loss": smoothed},
                step=step,
            )
        logger.log_metrics({"suggested_lr": result.suggested_lr}, step=result.steps_run)
        if isinstance(logger, WandbLogger):
            logger.log_image(key="lr_find", images=[str(png)])
            logger.experiment.summary.update({"suggested_lr": result.suggested_lr})
        logger.save()
    finish_loggers(loggers)
