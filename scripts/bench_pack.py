#!/usr/bin/env python3
"""Packed trials, whole sweeps: trials per hour and best dev for pack=1 against packs (issue 20).

Runs the same `makemore-train sweep=NAME` once per pack size, one after the other, each in a
fresh folder with its own study, records (W&B offline, CSV) and workers as shipped:

    python scripts/bench_pack.py --sweep lecture_tune --packs 1,8       # goal (a), about 20 min on 2 cores
    python scripts/bench_pack.py --sweep beat_2p2 --packs 1,8           # goal (b)
    python scripts/bench_pack.py --sweep beat_2p2 --fixed-shape --packs 1,8,32,128 --device cuda   # on a GPU
    python scripts/bench_pack.py --sweep lecture_tune --n-trials 8 --steps 2000      # a quick check

For each pack it prints wall time, finished trials (complete and pruned), trials per hour (per
GPU with --device cuda, which runs one worker), the best dev loss and the ratio to the first
pack in --packs, then the issue's goals. Record what it prints in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from makemore_sweep.data.names_file import checkout_names_file

REPO = Path(__file__).resolve().parents[1]
# The goals of issue 20 on a CPU: (sweep, least trials-per-hour ratio, most best-dev excess).
CPU_GOALS = {"lecture_tune": (2.5, 0.005), "beat_2p2": (1.0, None)}
GPU_GOAL = 10.0  # trials per hour per GPU at the best pack, against pack=1
# beat_2p2's searched shape, fixed at a typical one (--fixed-shape): its trials then differ in
# learning rate only, and share a cohort.
FIXED_SHAPE = ["model.n_embd=21", "model.n_hidden=300", "data.block_size=6"]


def run_sweep(args: argparse.Namespace, pack: int, folder: Path) -> dict[str, object]:
    study = f"bench_{args.sweep}_pack{pack}"
    overrides = [
        f"sweep={args.sweep}",
        f"hydra.sweeper.pack={pack}",
        f"hydra.sweeper.study_name={study}",
        f"data.path={args.names}",
    ]
    if args.n_trials:
        overrides.append(f"hydra.sweeper.n_trials={args.n_trials}")
    if args.steps:
        overrides += [
            f"trainer.max_steps={args.steps}",
            f"trainer.val_every_n_steps={max(args.steps // 10, 1)}",
        ]
    if args.fixed_shape:  # one cohort: the search keeps only what members keep on their own
        overrides += [*FIXED_SHAPE, "hydra.sweeper.enqueue=[]"]
    if args.device == "cuda":
        overrides += ["trainer.accelerator=gpu", "hydra.sweeper.workers=1"]
    command = [sys.executable, "-m", "makemore_sweep.cli.train", *overrides]
    print(f"$ makemore-train {' '.join(overrides)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        command,
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"the sweep with pack={pack} failed (exit {done.returncode})")
    trials = optuna.load_study(
        study_name=study, storage=f"sqlite:///{folder}/studies/{study}.db"
    ).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # Optimiser steps trained in all: pruning stops fewer trials early when more run at once.
    steps = sum(
        json.loads(path.read_text())["steps"]
        for path in (folder / "multirun" / study).glob("trial_*/metrics.json")
    )
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return {
        "pack": pack,
        "wall_s": round(wall, 1),
        "finished": len(finished),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "trials_per_hour": round(len(finished) / wall * 3600, 1),
        "trial_steps": steps,
        "trial_steps_per_s": round(steps / wall),
        "best_dev": min(t.value for t in complete) if complete else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="lecture_tune")
    parser.add_argument("--packs", default="1,8")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--n-trials", type=int, default=None, help="default: the sweep's")
    parser.add_argument("--steps", type=int, default=None, help="default: the sweep's")
    parser.add_argument("--names", default=str(checkout_names_file(REPO)))
    parser.add_argument(
        "--fixed-shape",
        action="store_true",
        help="fix beat_2p2's shape (n_embd 21, n_hidden 300, context 6): one cohort",
    )
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    packs = [int(p) for p in args.packs.split(",")]
    print(
        f"bench_pack: {args.sweep} on {args.device} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores), packs {packs}",
        flush=True,
    )
    rows = []
    for pack in packs:
        with tempfile.TemporaryDirectory(prefix=f"bench_pack{pack}_") as folder:
            row = run_sweep(args, pack, Path(folder))
        rows.append(row)
        base = rows[0]
        ratio = float(row["trials_per_hour"]) / float(base["trials_per_hour"])  # type: ignore[arg-type]
        row["ratio"] = round(ratio, 2)
        print(
            f"pack={pack:<4} wall {row['wall_s']:>7} s  finished {row['finished']:>3} "
            f"(failed {row['failed']})  {row['trials_per_hour']:>8} trials/h  "
            f"{row['trial_steps']} steps ({row['trial_steps_per_s']}/s)  "
            f"best dev {row['best_dev']}  ×{row['ratio']} vs pack={base['pack']}",
            flush=True,
        )
    best = max(rows, key=lambda r: float(r["ratio"]))  # type: ignore[arg-type]
    if args.device == "cuda":
        verdict = "met" if float(best["ratio"]) >= GPU_GOAL else "missed"  # type: ignore[arg-type]
        print(
            f"goal: ≥ {GPU_GOAL}× trials/h per GPU at the best pack (pack={best['pack']}, "
            f"×{best['ratio']}): {verdict}"
        )
    elif args.n_trials or args.steps or args.fixed_shape:
        print("goal: not judged (the CPU goals are for the sweeps as shipped)")
    elif args.sweep in CPU_GOALS and len(rows) > 1:
        least, excess = CPU_GOALS[args.sweep]
        chosen = rows[-1]
        met = float(chosen["ratio"]) >= least  # type: ignore[arg-type]
        line = f"goal: pack={chosen['pack']} ≥ {least}× the trials/h of pack={rows[0]['pack']}: ×{chosen['ratio']}"
        if (
            excess is not None
            and chosen["best_dev"] is not None
            and rows[0]["best_dev"] is not None
        ):
            gap = float(chosen["best_dev"]) - float(rows[0]["best_dev"])  # type: ignore[arg-type]
            met = met and gap <= excess
            line += f"; best dev within +{excess}: {gap:+.4f}"
        print(f"{line}: {'met' if met else 'missed'}")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"sweep": args.sweep, "device": args.device, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
