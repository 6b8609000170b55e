#!/usr/bin/env python
"""makemore-train's sweep against a bare Optuna + PyTorch peer, on the same fixed work (issue 19).

In one sitting, each in a fresh temporary folder:

  fixed    `makemore-train sweep=beat_2p2` as a user runs it (the real CLI, a subprocess, the
           default W&B offline + CSV loggers, checkpoints, metrics.json, samples), on a fixed
           list of `--trials` configurations of beat_2p2's space (drawn once by Optuna's
           RandomSampler, seed 0) enqueued with `hydra.sweeper.enqueue=[...]`, unpruned
           (`hydra.sweeper.pruner=none`), `--steps` steps each, dev loss every 250 steps,
           `--workers` workers, a fresh study in an SQLite file;
  bare     scripts/peer_bare.py: the same configurations, model, schedule, batch, seed and
           validations, with `--workers` processes popping enqueued trials from one SQLite
           study and keeping nothing else;
  shipped  the shipped 30-trial `makemore-train sweep=beat_2p2` (Hyperband, 4,000 steps), only
           `data.path` and the folder given.

For each it prints the wall time, the utilisation Σ train_time_s / (workers × wall), the median
time per trial outside training ((datetime_complete − datetime_start) − train_time_s, from the
study) and the best dev loss, then the goals: framework wall ≤ bare wall / 0.95 on the fixed
work; utilisation ≥ 90% on the fixed work and the shipped sweep; median outside ≤ 0.5 s.

    python scripts/bench_peer.py                                   # all three (about 20 min on 2 cores)
    python scripts/bench_peer.py --only fixed,bare --out peer.json # the fixed work only
    python scripts/bench_peer.py --trials 4 --steps 300 --shipped-steps 500   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.data.names_file import checkout_names_file

REPO = Path(__file__).resolve().parents[1]
BARE = Path(__file__).resolve().parent / "peer_bare.py"
VAL_EVERY = 250  # beat_2p2's trainer.val_every_n_steps
RUNS = ("fixed", "bare", "shipped")


def draw_configs(n: int, seed: int) -> list[dict[str, Any]]:
    # scripts/ is on sys.path when this file runs as a script; the bare peer owns the space.
    import peer_bare

    return peer_bare.draw_configs(n, seed)


def enqueue_override(configs: list[dict[str, Any]]) -> str:
    """`hydra.sweeper.enqueue=[{model.n_embd:21,...},...]`: one argv item, so no shell quoting;
    repr() of a float reads back as the same float in Hydra's grammar and in JSON."""
    items = ["{" + ",".join(f"{k}:{v!r}" for k, v in c.items()) + "}" for c in configs]
    return f"hydra.sweeper.enqueue=[{','.join(items)}]"


def cli() -> list[str]:
    """The installed console script beside this Python, as a user runs it."""
    script = Path(sys.executable).parent / "makemore-train"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "makemore_sweep.cli.train"]


def environment() -> dict[str, str]:
    # Offline W&B, the default; set here so a user's WANDB_MODE=online cannot reach the network.
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def timed(command: list[str], workdir: Path, label: str) -> tuple[float, str]:
    """Run `command` in `workdir`; (wall seconds, its output). Output also goes to run.log."""
    print(f"[bench] {label}: {' '.join(command)[:300]}", flush=True)
    started = time.perf_counter()
    finished = subprocess.run(
        command,
        cwd=workdir,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    wall_s = time.perf_counter() - started
    (workdir / "run.log").write_text(finished.stdout)
    if finished.returncode != 0:
        tail = "\n".join(finished.stdout.splitlines()[-15:])
        raise SystemExit(
            f"the {label} run failed (exit {finished.returncode}); see {workdir / 'run.log'}:\n{tail}"
        )
    return wall_s, finished.stdout


def framework_train_time(trial: FrozenTrial, sweep_dir: Path) -> float:
    """train_time_s as the trial recorded it in the study, else from its metrics.json."""
    if "train_time_s" in trial.user_attrs:
        return float(trial.user_attrs["train_time_s"])
    metrics = json.loads((sweep_dir / f"trial_{trial.number}" / "metrics.json").read_text())
    return float(metrics["train_time_s"])


def framework_threads(sweep_dir: Path) -> list[int]:
    """The torch threads each trial ran with (metrics.json), to check both sides used the same."""
    return sorted(
        {
            int(json.loads(path.read_text()).get("torch_threads", 0))
            for path in sweep_dir.glob("trial_*/metrics.json")
        }
    )


def figures(
    label: str,
    wall_s: float,
    workers: int,
    trials: list[FrozenTrial],
    train_s: dict[int, float],
    threads: list[int],
) -> dict[str, Any]:
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    outside = [
        (t.datetime_complete - t.datetime_start).total_seconds() - train_s[t.number]
        for t in done
        if t.datetime_start and t.datetime_complete
    ]
    complete = [t for t in done if t.state == TrialState.COMPLETE and t.value is not None]
    total_train = sum(train_s[t.number] for t in done)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    return {
        "run": label,
        "wall_s": round(wall_s, 2),
        "train_s": round(total_train, 2),
        "workers": workers,
        "torch_threads": threads,
        "utilisation": round(total_train / (workers * wall_s), 4),
        "median_outside_s": round(statistics.median(outside), 3) if outside else None,
        "best_dev": min((float(t.value) for t in complete), default=None),  # type: ignore[arg-type]
        "trials": states,
        "per_trial": [
            {
                "number": t.number,
                "params": t.params,
                "value": t.value,
                "train_time_s": round(train_s[t.number], 3),
            }
            for t in done
        ],
    }


def run_fixed(workdir: Path, configs: list[dict[str, Any]], args: argparse.Namespace) -> dict:
    name = "peer_fixed"
    (workdir / "studies").mkdir(parents=True)  # the sweep refuses a storage folder that is missing
    storage = f"sqlite:///{workdir / 'studies' / name}.db"
    command = [
        *cli(),
        "sweep=beat_2p2",
        f"data.path={args.names}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={len(configs)}",
        f"hydra.sweeper.workers={args.workers}",
        "hydra.sweeper.pruner=none",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_every_n_steps={VAL_EVERY}",
        enqueue_override(configs),
    ]
    wall_s, _ = timed(command, workdir, "fixed (makemore-train)")
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    sweep_dir = workdir / "multirun" / name
    train_s = {
        t.number: framework_train_time(t, sweep_dir) for t in trials if t.state.is_finished()
    }
    return figures("fixed", wall_s, args.workers, trials, train_s, framework_threads(sweep_dir))


def run_bare(workdir: Path, configs: list[dict[str, Any]], args: argparse.Namespace) -> dict:
    name = "peer_bare"
    workdir.mkdir(parents=True)
    (workdir / "configs.json").write_text(json.dumps(configs))
    storage = f"sqlite:///{workdir / name}.db"
    command = [
        sys.executable,
        str(BARE),
        f"--configs={workdir / 'configs.json'}",
        f"--storage={storage}",
        f"--study={name}",
        f"--workers={args.workers}",
        f"--steps={args.steps}",
        f"--val-every={VAL_EVERY}",
        f"--names={args.names}",
    ]
    wall_s, output = timed(command, workdir, "bare (Optuna + PyTorch)")
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"trial"')]
    train_s = {int(r["trial"]): float(r["train_time_s"]) for r in lines}
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    threads = sorted({int(r["torch_threads"]) for r in lines})
    return figures("bare", wall_s, args.workers, trials, train_s, threads)


def run_shipped(workdir: Path, args: argparse.Namespace) -> dict:
    name = "beat_2p2"
    workdir.mkdir(parents=True)
    command = [
        *cli(),
        "sweep=beat_2p2",
        f"data.path={args.names}",
        # Only what differs from the shipped sweep (a quick check of this script).
        *([f"hydra.sweeper.n_trials={args.trials}"] if args.trials != 30 else []),
        *([f"hydra.sweeper.workers={args.workers}"] if args.workers != 2 else []),
        *([f"trainer.max_steps={args.shipped_steps}"] if args.shipped_steps else []),
    ]
    wall_s, _ = timed(command, workdir, "shipped (makemore-train)")
    storage = f"sqlite:///{workdir / 'studies' / name}.db"  # the sweep's default storage
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    sweep_dir = workdir / "multirun" / name
    train_s = {
        t.number: framework_train_time(t, sweep_dir) for t in trials if t.state.is_finished()
    }
    return figures("shipped", wall_s, args.workers, trials, train_s, framework_threads(sweep_dir))


def same_work(fixed: dict, bare: dict) -> float | None:
    """The largest difference of one configuration's dev loss between the two sides."""

    def key(r: dict) -> tuple:
        return tuple(sorted(r["params"].items()))

    bare_values = {key(r): r["value"] for r in bare["per_trial"]}
    gaps = [
        abs(r["value"] - bare_values[key(r)])
        for r in fixed["per_trial"]
        if key(r) in bare_values and r["value"] is not None
    ]
    return max(gaps) if gaps else None


def report(results: dict[str, dict], args: argparse.Namespace) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    print(
        f"\nframework vs bare peer: {args.trials} fixed beat_2p2 trials x {args.steps} steps, unpruned, "
        f"{args.workers} workers ({max(1, cores // args.workers)} torch threads each); "
        f"{platform.node()}, {cores} cores, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        f"{'run':<9} {'wall s':>8} {'train s':>8} {'util':>6} {'outside s':>10} {'best dev':>9} "
        f"{'threads':>7}  trials"
    )
    for r in results.values():
        best = f"{r['best_dev']:.4f}" if r["best_dev"] is not None else "-"
        outside = f"{r['median_outside_s']:.3f}" if r["median_outside_s"] is not None else "-"
        print(
            f"{r['run']:<9} {r['wall_s']:>8.1f} {r['train_s']:>8.1f} {r['utilisation']:>6.1%} "
            f"{outside:>10} {best:>9} {','.join(map(str, r['torch_threads'])):>7}  "
            + ", ".join(f"{n} {s}" for s, n in r["trials"].items())
        )
    goals: dict[str, Any] = {}
    lines = []
    fixed, bare, shipped = (results.get(k) for k in RUNS)
    if fixed and bare:
        gap = same_work(fixed, bare)
        ratio = fixed["wall_s"] / bare["wall_s"]
        goals["wall_ratio"] = round(ratio, 4)
        goals["wall_met"] = ratio <= 1 / 0.95
        goals["max_dev_gap"] = gap
        lines.append(
            f"framework wall {fixed['wall_s']:.1f} s = {ratio:.3f}× bare's {bare['wall_s']:.1f} s "
            f"(goal ≤ {1 / 0.95:.3f}×, i.e. bare ≥ 95% of it): {'met' if goals['wall_met'] else 'NOT met'}"
        )
        if gap is not None:
            lines.append(f"same work: largest dev-loss gap of one configuration {gap:.2e}")
        if fixed["torch_threads"] != bare["torch_threads"]:
            lines.append(
                f"WARNING: torch threads per trial differ (framework {fixed['torch_threads']}, "
                f"bare {bare['torch_threads']}): the wall times do not compare"
            )
    for r in (fixed, shipped):
        if r is None:
            continue
        met = r["utilisation"] >= 0.9
        goals[f"{r['run']}_utilisation_met"] = met
        lines.append(
            f"{r['run']} utilisation {r['utilisation']:.1%} (goal ≥ 90%): {'met' if met else 'NOT met'}"
        )
        if r["median_outside_s"] is not None:
            met = r["median_outside_s"] <= 0.5
            goals[f"{r['run']}_outside_met"] = met
            lines.append(
                f"{r['run']} median outside training {r['median_outside_s']:.3f} s per trial "
                f"(goal ≤ 0.5 s): {'met' if met else 'NOT met'}"
            )
    print("goals:")
    for line in lines:
        print(f"  {line}")
    return goals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--names",
        type=Path,
        default=checkout_names_file(REPO),
        help="names.txt (default: $MAKEMORE_NAMES, data/ or ../shared/data/)",
    )
    parser.add_argument(
        "--trials", type=int, default=30, help="fixed configurations (and n_trials)"
    )
    parser.add_argument("--steps", type=int, default=1500, help="steps per fixed trial")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixed configurations")
    parser.add_argument(
        "--only",
        default=",".join(RUNS),
        help="comma-separated runs among fixed, bare, shipped (default: all, in that order)",
    )
    parser.add_argument(
        "--shipped-steps",
        type=int,
        default=None,
        help="trainer.max_steps of the shipped sweep (default: the sweep's; for quick checks)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="kept folder (default: a temp one)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file with all figures")
    args = parser.parse_args()
    if args.names is None:
        parser.error("no names.txt in $MAKEMORE_NAMES, data/ or ../shared/data/; pass --names FILE")
    args.names = args.names.resolve()
    chosen = [r.strip() for r in args.only.split(",") if r.strip()]
    if unknown := [r for r in chosen if r not in RUNS]:
        parser.error(f"--only: unknown run {unknown[0]!r}; choose among {', '.join(RUNS)}")
    configs = draw_configs(args.trials, args.seed)

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        for run in (r for r in RUNS if r in chosen):
            if run == "fixed":
                results[run] = run_fixed(root / "fixed", configs, args)
            elif run == "bare":
                results[run] = run_bare(root / "bare", configs, args)
            else:
                results[run] = run_shipped(root / "shipped", args)
    goals = report(results, args)
    if args.out:
        summary = {
            "trials": args.trials,
            "steps": args.steps,
            "workers": args.workers,
            "seed": args.seed,
            "configs": configs,
            "machine": {"node": platform.node(), "cores": len(os.sched_getaffinity(0))},
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "results": results,
            "goals": goals,
        }
        args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"figures: {args.out.resolve()}")


if __name__ == "__main__":
    main()
