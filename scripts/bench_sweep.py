#!/usr/bin/env python3
"""Benchmark the beat_2p2 sweep: its wall time and best losses, with pruning and without.

Runs `makemore-train sweep=beat_2p2` twice, one after the other on the same machine, each in a
fresh folder (its own SQLite study): with `hydra.sweeper.pruner=median` (the sweep's default)
and with `hydra.sweeper.pruner=none`. Prints wall time, best dev and test loss and the trial
counts of each, and the time saved by pruning. Record what it prints in BENCHMARKS.md.

    python scripts/bench_sweep.py                                 # the full 30-trial sweeps
    python scripts/bench_sweep.py --n-trials 2 --steps 40         # a quick check of the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from makemore_sweep.data.names_file import checkout_names_file

STUDY = "beat_2p2"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_NAMES = checkout_names_file(REPO)


def run_sweep(workdir: Path, pruner: str, args: argparse.Namespace) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=False)
    command = [
        sys.executable,
        "-m",
        "makemore_sweep.cli.train",
        f"sweep={STUDY}",
        f"hydra.sweeper.pruner={pruner}",
        f"hydra.sweeper.n_trials={args.n_trials}",
        f"hydra.sweeper.export_dir={workdir / 'experiments'}",
        *([f"data.path={args.names}"] if args.names else []),
        *([f"trainer.max_steps={args.steps}"] if args.steps else []),
        *args.override,
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    print(f"[bench] pruner={pruner}: {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    with open(workdir / "sweep.log", "w") as log:
        finished = subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall_s = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"the sweep with pruner={pruner} failed (exit {finished.returncode}); see {workdir / 'sweep.log'}")

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{workdir}/studies/{STUDY}.db")
    states = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    best = study.best_trial
    trained_s = sum(t.user_attrs.get("train_time_s", 0.0) for t in study.trials)
    return {
        "pruner": pruner,
        "wall_s": round(wall_s, 1),
        "train_s": round(trained_s, 1),
        "best_dev": best.value,
        "best_test": best.user_attrs.get("test_loss"),
        "best_trial": best.number,
        "best_params": best.params,
        "trials": {k: v for k, v in states.items() if v},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--steps", type=int, default=None, help="trainer.max_steps per trial (default: the sweep's)")
    parser.add_argument("--names", type=Path, default=DEFAULT_NAMES, help="names.txt (default: $MAKEMORE_NAMES, data/ or ../shared/data/)")
    parser.add_argument("--workdir", type=Path, default=Path("bench-sweep") / time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = parser.parse_args()

    results = [run_sweep(args.workdir.resolve() / pruner, pruner, args) for pruner in ("median", "none")]
    pruned, plain = results
    saved = 1 - float(pruned["wall_s"]) / float(plain["wall_s"])
    gap = float(pruned["best_dev"]) - float(plain["best_dev"])

    print(f"\nbeat_2p2 sweep, {args.n_trials} trials, {platform.node()}, {os.cpu_count()} cores")
    print(f"{'pruner':<8} {'wall s':>8} {'train s':>8} {'best dev':>9} {'best test':>9}  trials")
    for r in results:
        print(
            f"{r['pruner']:<8} {r['wall_s']:>8} {r['train_s']:>8} {r['best_dev']:>9.4f} {r['best_test']:>9.4f}  "
            + ", ".join(f"{n} {s}" for s, n in r["trials"].items())  # type: ignore[union-attr]
        )
    print(f"pruning saves {saved:.0%} of the wall time (goal ≥ 30%); best dev differs by {gap:+.4f} (goal within 0.01)")
    print(f"goals: 30 trials within 20 min: {float(plain['wall_s']) / 60:.1f} min without pruning, "
          f"{float(pruned['wall_s']) / 60:.1f} min with; best dev < 2.05: {min(float(r['best_dev']) for r in results):.4f}")
    summary = {"n_trials": args.n_trials, "results": results, "time_saved": saved, "best_dev_gap": gap}
    (args.workdir / "bench_sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"details: {args.workdir.resolve() / 'bench_sweep.json'}")


if __name__ == "__main__":
    main()
