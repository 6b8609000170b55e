#!/usr/bin/env python3
"""Benchmark the beat_2p2 sweep: one job per trial against long-lived workers, side by side.

Runs the same `makemore-train sweep=beat_2p2` (30 trials, median pruning, the same sampler
seed) one way after the other on the same machine, each in a fresh folder with its own study:

  (a) jobs    `hydra/launcher=local hydra.sweeper.workers=0 hydra.sweeper.n_jobs=2`  (a process per trial)
  (b) workers `hydra.sweeper.workers=2`                                              (2 long-lived workers)

With `--slurm` both run on the local SLURM cluster (scripts/slurm-local.sh), one job per trial
against two worker jobs. `--ways workers=1,workers=2 --pruner shipped` instead times the sweep
as shipped with 1 and 2 workers (how the default `workers` was chosen). For each way it prints
wall time, trials per hour, training utilisation (Σ train_time_s / (parallel slots × wall)) and
the best dev and test loss, then the goals of issue 11. Record what it prints in BENCHMARKS.md.

    python scripts/bench_sweep.py                               # the full comparison (about 25-35 min on 2 cores)
    python scripts/bench_sweep.py --slurm                       # on the local SLURM cluster (as root)
    python scripts/bench_sweep.py --n-trials 4 --steps 300      # a quick check of the script
    python scripts/bench_sweep.py --ways workers=1,workers=2 --pruner shipped   # the default's check

`--pruners none,median,...` (or `--from-json FILE`) compares pruners instead: see
scripts/bench_pruners.py (`python scripts/bench_pruners.py --help`).
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
from omegaconf import OmegaConf
from optuna.trial import TrialState

from makemore_sweep.data.names_file import checkout_names_file

STUDY = "beat_2p2"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_NAMES = checkout_names_file(REPO)
ON_LOCAL_CLUSTER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]


def ways(args: argparse.Namespace) -> list[tuple[str, int, list[str]]]:
    """(label, parallel slots, overrides) of each way in `args.ways` (jobs, workers, workers=N)."""
    # Workers are placed by the sweep's own launcher here, by SLURM with --slurm.
    placed = ON_LOCAL_CLUSTER if args.slurm else []
    chosen = []
    for way in args.ways.split(","):
        if way == "jobs":  # a process (or SLURM job) per trial, 2 at a time, in blocking batches
            chosen.append(
                (
                    "jobs",
                    2,
                    [
                        *(placed or ["hydra/launcher=local"]),
                        "hydra.sweeper.workers=0",
                        "hydra.sweeper.n_jobs=2",
                    ],
                )
            )
        elif way == "workers" or way.startswith("workers="):  # "workers" is the 2
            n = int(way.split("=", 1)[1]) if "=" in way else 2
            chosen.append((way, n, [*placed, f"hydra.sweeper.workers={n}"]))
        else:
            raise SystemExit(f"--ways: unknown way {way!r}; use jobs, workers or workers=N")
    return chosen


def sweep_command(
    workdir: Path, n_trials: int, overrides: list[str], args: argparse.Namespace
) -> list[str]:
    """`makemore-train sweep=beat_2p2` in `workdir`, with `args.names`, `.steps` and `.override`."""
    return [
        sys.executable,
        "-m",
        "makemore_sweep.cli.train",
        f"sweep={STUDY}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.export_dir={workdir / 'experiments'}",
        *([f"data.path={args.names}"] if args.names else []),
        *([f"trainer.max_steps={args.steps}"] if args.steps else []),
        *overrides,
        *args.override,
    ]


def sweep_env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def run_sweep(
    workdir: Path, label: str, slots: int, overrides: list[str], args: argparse.Namespace
) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=False)
    command = sweep_command(workdir, args.n_trials, overrides, args)
    env = sweep_env()
    print(f"[bench] {label}: {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    with open(workdir / "sweep.log", "w") as log:
        finished = subprocess.run(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    wall_s = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(
            f"the {label} sweep failed (exit {finished.returncode}); see {workdir / 'sweep.log'}"
        )

    results = OmegaConf.load(workdir / "multirun" / STUDY / "optimization_results.yaml")
    from makemore_sweep.sweeper.storage import open_storage

    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(results.storage)))
    states = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState
    }
    done = states.get("complete", 0) + states.get("pruned", 0)
    best = study.best_trial
    trained_s = sum(float(t.user_attrs.get("train_time_s", 0.0)) for t in study.trials)
    return {
        "way": label,
        "overrides": overrides,
        "wall_s": round(wall_s, 1),
        "train_s": round(trained_s, 1),
        "trials_per_hour": round(done / wall_s * 3600, 1),
        "utilisation": round(trained_s / (slots * wall_s), 3),
        "best_dev": best.value,
        "best_test": best.user_attrs.get("test_loss"),
        "best_trial": best.number,
        "best_params": best.params,
        "trials": {k: v for k, v in states.items() if v},
    }


def main() -> None:
    if any(arg.split("=")[0] in ("--pruners", "--from-json") for arg in sys.argv[1:]):
        # The pruner comparison (issue 12) has options and a module of its own; scripts/ is on
        # sys.path when this file runs as a script.
        import bench_pruners

        bench_pruners.main()
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument(
        "--steps", type=int, default=None, help="trainer.max_steps per trial (default: the sweep's)"
    )
    parser.add_argument(
        "--names",
        type=Path,
        default=DEFAULT_NAMES,
        help="names.txt (default: $MAKEMORE_NAMES, data/ or ../shared/data/)",
    )
    parser.add_argument(
        "--slurm", action="store_true", help="run both ways on the local SLURM cluster"
    )
    parser.add_argument(
        "--ways",
        default="jobs,workers",
        help="comma-separated: jobs, workers (2), workers=N (default: jobs,workers)",
    )
    parser.add_argument(
        "--pruner",
        default="median",
        help="pruner of every run (default: median, as issue 11 compares; 'shipped': the sweep file's)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("bench-sweep") / time.strftime("%Y%m%d-%H%M%S")
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="extra Hydra override for every run (repeatable)",
    )
    args = parser.parse_args()

    pruner = [f"hydra.sweeper.pruner={args.pruner}"] if args.pruner != "shipped" else []
    results = [
        run_sweep(
            args.workdir.resolve() / label.replace("=", "-"),
            label,
            slots,
            [*pruner, *overrides],
            args,
        )
        for label, slots, overrides in ways(args)
    ]
    by_way = {str(r["way"]): r for r in results}

    where = "local SLURM cluster" if args.slurm else "this machine"
    print(
        f"\nbeat_2p2 sweep, {args.n_trials} trials, pruner {args.pruner}, {where}: {platform.node()}, {os.cpu_count()} cores"
    )
    print(
        f"{'way':<10} {'wall s':>8} {'train s':>8} {'trials/h':>9} {'util':>6} {'best dev':>9} {'best test':>9}  trials"
    )
    for r in results:
        print(
            f"{r['way']:<10} {r['wall_s']:>8} {r['train_s']:>8} {r['trials_per_hour']:>9} {float(r['utilisation']):>6.0%} "  # type: ignore[arg-type]
            f"{r['best_dev']:>9.4f} {r['best_test']:>9.4f}  "
            + ", ".join(f"{n} {s}" for s, n in r["trials"].items())  # type: ignore[union-attr]
        )
    summary: dict[str, object] = {
        "n_trials": args.n_trials,
        "slurm": args.slurm,
        "pruner": args.pruner,
        "results": results,
    }
    if "jobs" in by_way and "workers" in by_way:
        jobs, workers = by_way["jobs"], by_way["workers"]
        speedup = float(workers["trials_per_hour"]) / float(jobs["trials_per_hour"])  # type: ignore[arg-type]
        gap = float(workers["best_dev"]) - float(jobs["best_dev"])  # type: ignore[arg-type]
        goal = 2.0 if args.slurm else 1.6
        print(
            f"goals: workers' utilisation {float(workers['utilisation']):.0%} (≥ 90%); trials/hour {speedup:.2f}× jobs' (≥ {goal}×); "  # type: ignore[arg-type]
            f"best dev {gap:+.4f} against jobs' (≤ +0.005)"
        )
        summary.update(speedup=speedup, best_dev_gap=gap)
    (args.workdir / "bench_sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"details: {args.workdir.resolve() / 'bench_sweep.json'}")


if __name__ == "__main__":
    main()
