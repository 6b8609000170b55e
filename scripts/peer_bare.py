#!/usr/bin/env python
"""The bare peer of a makemore-train sweep: Optuna + PyTorch, no framework, no records.

What a person would write by hand to run a fixed list of BN-MLP trials on N processes: one
Optuna study in an SQLite file (the storage makemore-train uses on one machine), the trials
enqueued once, and N worker processes that each pop the next enqueued trial with `study.ask()`,
train it and `study.tell()` its best dev loss. Nothing else is kept: no checkpoints, no logs,
no metrics files. It trains what a `beat_2p2` trial trains (scripts/bench_peer.py compares the
two): the project's MLPLanguageModel, AdamW (betas 0.9/0.99, no weight decay) with the
one-cycle rate of model/lr_schedules.py, batch 512 drawn with replacement, the dev loss on the
whole dev split (BatchNorm in eval mode, chunks of 4096) every `--val-every` steps and at the
end, and the run seed 1337 as makemore-train seeds it, so each trial draws the same weights
and batches as the framework's.

    python scripts/peer_bare.py --configs CONFIGS.json --storage sqlite:///DIR/peer.db \
        --study peer [--workers 2] [--steps 1500] [--val-every 250] [--names FILE]

CONFIGS.json is a list of {"model.n_embd", "model.n_hidden", "data.block_size", "optim.lr"}.
Each worker prints one JSON line per trial: {"trial", "value", "train_time_s", "worker",
"torch_threads"}.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.nn.functional as F
from optuna.trial import TrialState

from makemore_sweep.data.corpus import load_splits
from makemore_sweep.data.names_file import checkout_names_file
from makemore_sweep.model.networks import MLPLanguageModel

SEED = 1337  # makemore-train's `seed`, which every trial of a sweep runs with
BATCH = 512  # data.batch_size
EVAL_BATCH = 4096  # data.eval_batch_size
BETAS = (0.9, 0.99)  # optim.beta1, optim.beta2
WARMUP_FRAC = 0.1  # optim.warmup_frac of the one-cycle schedule (final rate 0)
# The beat_2p2 search space, which the enqueued values are drawn from.
SPACE: dict[str, tuple[str, float, float]] = {
    "model.n_embd": ("int", 8, 32),
    "model.n_hidden": ("int", 100, 500),
    "data.block_size": ("int", 3, 10),
    "optim.lr": ("log", 0.001, 0.03),
}


def draw_configs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` configurations of the beat_2p2 space, drawn once by Optuna's RandomSampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(suggest(trial))
        study.tell(trial, 0.0)
    return configs


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The trial's values; for an enqueued trial these are the enqueued ones."""
    params: dict[str, Any] = {}
    for name, (kind, low, high) in SPACE.items():
        if kind == "int":
            params[name] = trial.suggest_int(name, int(low), int(high))
        else:
            params[name] = trial.suggest_float(name, low, high, log=True)
    return params


def one_cycle(step: int, total: int, base_lr: float) -> float:
    """model/lr_schedules.py's onecycle: linear warm-up from base/25, then cosine down to 0."""
    warmup = int(WARMUP_FRAC * total)
    if step < warmup:
        start = base_lr / 25.0
        return start + (base_lr - start) * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def dev_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()  # BatchNorm with its running statistics
    total = torch.zeros(())
    for start in range(0, len(x), EVAL_BATCH):
        logits = net(x[start : start + EVAL_BATCH])
        total += F.cross_entropy(logits, y[start : start + EVAL_BATCH], reduction="sum")
    net.train()
    return float(total) / len(x)


def train(params: dict[str, Any], splits: Any, steps: int, val_every: int) -> tuple[float, float]:
    """One trial: (best dev loss, seconds of the training loop, validations included)."""
    torch.manual_seed(SEED)
    spec = {"n_embd": params["model.n_embd"], "n_hidden": params["model.n_hidden"]}
    net = MLPLanguageModel(splits.vocab.size, params["data.block_size"], **spec)
    # Batches from a stream that starts where the global one stands after the weights are drawn,
    # as the framework's sampler does: the same batches, so the same losses.
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=params["optim.lr"], betas=BETAS)
    x, y = splits.train
    x_dev, y_dev = splits.val
    best = math.inf
    started = time.perf_counter()
    for step in range(steps):
        lr = one_cycle(step, steps, params["optim.lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(0, len(x), (BATCH,), generator=generator)
        loss = F.cross_entropy(net(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % val_every == 0 or step + 1 == steps:
            best = min(best, dev_loss(net, x_dev, y_dev))
    return best, time.perf_counter() - started


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """One worker at a time checks for a waiting trial and pops it: without this, two workers
    could both see the last one and the loser's ask() would sample a new, unlisted trial."""
    descriptor = os.open(
        folder, os.O_RDONLY
    )  # a folder takes flock like a file; nothing left behind
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def worker(args: argparse.Namespace, index: int) -> None:
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    lock_folder = Path(args.storage.removeprefix("sqlite:///")).parent
    splits: dict[int, Any] = {}  # read and windowed once per context length, as a worker does
    while True:
        with study_lock(lock_folder):
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return
            trial = study.ask()
        params = suggest(trial)
        block = params["data.block_size"]
        if block not in splits:
            splits[block] = load_splits(args.names, block)
        value, train_s = train(params, splits[block], args.steps, min(args.val_every, args.steps))
        study.tell(trial, value)
        print(
            json.dumps(
                {
                    "trial": trial.number,
                    "value": value,
                    "train_time_s": train_s,
                    "worker": index,
                    "torch_threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", type=Path, required=True, help="JSON list of parameter sets")
    parser.add_argument("--storage", required=True, help="sqlite:///FILE.db (a new study)")
    parser.add_argument("--study", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (default: cores // workers, as makemore-train's workers get)",
    )
    parser.add_argument(
        "--names", type=Path, default=checkout_names_file(Path(__file__).resolve().parents[1])
    )
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.names is None:
        parser.error("no names.txt in $MAKEMORE_NAMES, data/ or ../shared/data/; pass --names FILE")
    if args.threads is None:
        args.threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    if args.worker_index is not None:
        worker(args, args.worker_index)
        return

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=args.study, storage=args.storage, direction="minimize")
    for params in json.loads(args.configs.read_text()):
        study.enqueue_trial(params)
    # Workers are fresh processes running this file, as makemore-train's local workers are.
    command = [sys.executable, __file__, *sys.argv[1:], "--threads", str(args.threads)]
    processes = [
        subprocess.Popen([*command, "--worker-index", str(i)]) for i in range(args.workers)
    ]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"a worker failed (exit codes {codes})")
    print(json.dumps({"best_value": study.best_value, "best_trial": study.best_trial.number}))


if __name__ == "__main__":
    main()
