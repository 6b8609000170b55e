#!/usr/bin/env python3
"""Benchmark pruners on the beat_2p2 sweep: wall time, best dev and test loss, and the anytime
curve (issue 12). `python scripts/bench_sweep.py --pruners ...` runs this too.

For each sampler seed it first runs the unpruned sweep (`hydra.sweeper.pruner=none`, n_trials
trials, the default 2 workers) and takes its wall time W, then each other pruner with the same
seed, each in a fresh folder with its own study. With `--budget time` (the default) a pruned
sweep may run up to --max-trials trials and is stopped at W (SIGINT, as Ctrl-C), so every pruner
gets the same time; with `--budget trials` it runs the same n_trials and stops when done.

The anytime curve is the best dev loss of the COMPLETE trials finished by 25, 50, 75 and 100% of
W (pruned trials never count: their dev loss is not a trained model's). It prints one table,
the goals of issue 12 for each pruner, and the pruner with the best anytime curve: the lowest
mean of the four points. Everything goes to WORKDIR/bench_pruners.json and a figure of the
curves to --figure; `--from-json` prints and draws them again without running anything.

    python scripts/bench_pruners.py --pruners none,median,successive_halving,hyperband,patient --seeds 1337,1338,1339
    python scripts/bench_pruners.py --pruners none,median --seeds 1,2 --n-trials 3 --steps 300   # a quick check
    python scripts/bench_pruners.py --from-json bench-pruners/DATE/bench_pruners.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any

from bench_sweep import DEFAULT_NAMES, REPO, STUDY, sweep_command, sweep_env

CURVE_POINTS = (0.25, 0.5, 0.75, 1.0)
REACH_GOAL = 0.6  # reach the unpruned sweep's best dev within this share of its wall time
STOP_WAIT_S = 90  # after SIGINT the sweep stops its workers: SIGTERM, SIGKILL 20 s later
Run = dict[str, Any]


# -- running the sweeps ---------------------------------------------------------------------
def run_pruner(
    workdir: Path,
    pruner: str,
    seed: int,
    n_trials: int,
    stop_after_s: float | None,
    args: argparse.Namespace,
) -> Run:
    """One sweep in a fresh folder; stopped with SIGINT after `stop_after_s` seconds if still running."""
    workdir.mkdir(parents=True, exist_ok=False)
    storage = (
        f"sqlite:///{workdir / 'studies' / f'{STUDY}.db'}"  # known even if the sweep is stopped
    )
    overrides = [
        f"hydra.sweeper.pruner={pruner}",
        f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweeper.storage={storage}",
    ]
    command = sweep_command(workdir, n_trials, overrides, args)
    print(f"[bench] {pruner}, seed {seed}: {' '.join(command[2:])}", flush=True)
    stopped = False
    # Optuna stores datetime_complete as the local naive datetime.now() of the process that
    # finishes the trial: the start is taken the same way, on the same machine.
    started = datetime.now()
    clock = time.monotonic()
    # A session of its own: if the sweep hangs, its workers can be stopped with it (stop()).
    with (
        open(workdir / "sweep.log", "w") as log,
        subprocess.Popen(
            command,
            cwd=workdir,
            env=sweep_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as child,
    ):
        try:
            child.wait(timeout=stop_after_s)
        except subprocess.TimeoutExpired:
            stopped = True
            wall_s = time.monotonic() - clock
            stop(child)
        except KeyboardInterrupt:  # Ctrl-C here no longer reaches the sweep's session: pass it on
            stop(child)
            raise
    if not stopped:
        wall_s = time.monotonic() - clock
        if child.returncode != 0:
            raise SystemExit(
                f"the {pruner} sweep (seed {seed}) failed (exit {child.returncode}); see {workdir / 'sweep.log'}"
            )
    return {
        "pruner": pruner,
        "seed": seed,
        "n_trials": n_trials,
        "stopped": stopped,
        "exit_code": child.returncode,
        "wall_s": round(wall_s, 1),
        **study_outcome(storage, started),
        "log": str(workdir / "sweep.log"),
    }


def stop(child: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to the sweep, which stops its workers (they give their trials back); if it hangs,
    SIGTERM and then SIGKILL to its whole session, workers included."""
    child.send_signal(signal.SIGINT)
    for sig, wait_s in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, 30.0)):
        try:
            child.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            print(
                f"[bench] the sweep did not stop within {wait_s:.0f} s: {sig.name} to its processes",
                flush=True,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
    child.wait()
    with contextlib.suppress(
        ProcessLookupError
    ):  # nothing of the sweep's may go on into the next one
        os.killpg(child.pid, signal.SIGKILL)


def study_outcome(storage: str, started: datetime) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from makemore_sweep.sweeper.storage import open_storage

    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    completions = [
        {
            "t_s": round((t.datetime_complete - started).total_seconds(), 2),
            "dev": t.value,
            "test": t.user_attrs.get("test_loss"),
            "trial": t.number,
        }
        for t in complete
        if t.datetime_complete is not None
    ]
    completions.sort(key=lambda c: float(c["t_s"]))
    pruned = sorted(
        round((t.datetime_complete - started).total_seconds(), 2)
        for t in trials
        if t.state == TrialState.PRUNED and t.datetime_complete is not None
    )
    best = min(complete, key=lambda t: t.value if t.value is not None else math.inf, default=None)
    return {
        "trials": {k: v for k, v in states.items() if v},
        "best_dev": best.value if best else None,
        "best_test": best.user_attrs.get("test_loss") if best else None,
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "completions": completions,
        "pruned_t_s": pruned,
    }


# -- the figures ----------------------------------------------------------------------------
def best_within(run: Run, seconds: float) -> dict[str, Any] | None:
    """The run's best trial among those completed within `seconds` of its start (None: none yet)."""
    done = [c for c in run["completions"] if c["t_s"] <= seconds]
    return min(done, key=lambda c: float(c["dev"])) if done else None


def best_by(run: Run, seconds: float) -> float | None:
    best = best_within(run, seconds)
    return None if best is None else float(best["dev"])


def reach_s(run: Run, target: float) -> float | None:
    """When the run's best dev loss first got to `target` or below (None: never)."""
    best = math.inf
    for c in run["completions"]:
        best = min(best, float(c["dev"]))
        if best <= target:
            return float(c["t_s"])
    return None


def mean_of(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return mean(present) if present else None


def summarise(runs: list[Run], pruners: list[str]) -> dict[str, dict[str, Any]]:
    """Per pruner, means over the seeds whose unpruned sweep ran; times are shares of that seed's W."""
    unpruned = {r["seed"]: r for r in runs if r["pruner"] == "none" and r["best_dev"] is not None}
    rows: dict[str, dict[str, Any]] = {}
    for pruner in pruners:
        mine = [r for r in runs if r["pruner"] == pruner and r["seed"] in unpruned]
        if not mine:
            continue
        curves, reached, bests, counts = [], [], [], []
        for run in mine:
            base = unpruned[run["seed"]]
            # A stopped sweep's result is what it had at W: its workers may finish a trial or two
            # while they stop.
            limit = base["wall_s"] if run["stopped"] else math.inf
            bests.append(best_within(run, limit))
            counts.append(
                (
                    sum(c["t_s"] <= limit for c in run["completions"]),
                    sum(t <= limit for t in run["pruned_t_s"]),
                )
            )
            # Before a sweep's first complete trial its curve has no value: the worst trial any
            # sweep of that seed completed stands in, so missing points count against it.
            worst = max(
                float(c["dev"]) for r in runs if r["seed"] == run["seed"] for c in r["completions"]
            )
            points = [best_by(run, share * base["wall_s"]) for share in CURVE_POINTS]
            curves.append([(worst, True) if p is None else (p, False) for p in points])
            at = reach_s(run, float(base["best_dev"]))
            reached.append(None if at is None else at / base["wall_s"])
        curve = [mean(c[i][0] for c in curves) for i in range(len(CURVE_POINTS))]
        stand_ins = [any(c[i][1] for c in curves) for i in range(len(CURVE_POINTS))]
        shares = [s for s in reached if s is not None]
        dev_at_w = curve[-1]
        unpruned_best = mean(float(unpruned[r["seed"]]["best_dev"]) for r in mine)
        rows[pruner] = {
            "seeds": [r["seed"] for r in mine],
            "wall_s": mean(float(r["wall_s"]) for r in mine),
            "best_dev": mean_of([b["dev"] for b in bests if b is not None]),
            "best_test": mean_of([b["test"] for b in bests if b is not None]),
            "curve": curve,
            "curve_stand_ins": stand_ins,
            "curve_mean": mean(curve),
            "reach_shares": reached,
            "reach_mean": mean(shares) if shares else None,
            "complete": mean(c for c, _ in counts),
            "pruned": mean(p for _, p in counts),
            # Goal 1: every seed reaches its unpruned best, within REACH_GOAL × W on average.
            "goal_reach": len(shares) == len(mine) and mean(shares) <= REACH_GOAL,
            # Goal 2: at W, the best dev (mean over seeds) is no worse than the unpruned sweeps'.
            "dev_at_w_gap": dev_at_w - unpruned_best,
            "goal_equal_time": dev_at_w <= unpruned_best,
        }
    return rows


def print_report(data: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str | None:
    """The table, the goals and the pruner with the best anytime curve (returned)."""
    budget = {"time": "pruned sweeps stopped at W", "trials": "every sweep runs all its trials"}[
        data["budget"]
    ]
    print(
        f"\n{STUDY} sweep, {data['n_trials']} trials unpruned ({budget}), seeds {', '.join(map(str, data['seeds']))}; "
        f"{data['host']}, {data['cores']} cores, {data['date']}"
    )
    points = "".join(f"{f'dev@{share:.0%}':>9}" for share in CURVE_POINTS)
    print(
        f"{'pruner':<19}{'wall s':>8}{'best dev':>9}{'best test':>10}{points}  {'reach best':>16}  complete/pruned"
    )

    def number(value: float | None, width: int, mark: bool = False) -> str:
        return f"{'—' if value is None else f'{value:.4f}' + ('*' if mark else ''):>{width}}"

    for pruner, row in rows.items():
        reach = "never" if row["reach_mean"] is None else f"{row['reach_mean']:.2f} W"
        reach += f" ({sum(s is not None for s in row['reach_shares'])}/{len(row['seeds'])})"
        curve = "".join(
            number(v, 9, mark) for v, mark in zip(row["curve"], row["curve_stand_ins"], strict=True)
        )
        print(
            f"{pruner:<19}{row['wall_s']:>8.1f}{number(row['best_dev'], 9)}{number(row['best_test'], 10)}{curve}  "
            f"{reach:>16}  {row['complete']:.1f}/{row['pruned']:.1f}"
        )
    print(
        "W: the unpruned sweep's wall time, per seed; dev@x: best dev of the trials completed by x·W; reach best: mean\n"
        "share of W to reach the unpruned sweep's final best dev (seeds that did); all values mean over the seeds."
    )
    if any(any(row["curve_stand_ins"]) for row in rows.values()):
        print(
            "*: some seed had no complete trial yet; the worst dev any sweep of that seed completed stands in."
        )
    print(
        f"\ngoals: reach the unpruned best dev in ≤ {REACH_GOAL:.0%} of W (every seed, mean share); best dev at W ≤ the unpruned one's (mean over seeds)"
    )
    for pruner, row in rows.items():
        reach = (
            "never in some seed" if None in row["reach_shares"] else f"{row['reach_mean']:.2f} W"
        )
        print(
            f"  {pruner:<19} reach: {reach} ({'met' if row['goal_reach'] else 'not met'}); "
            f"at W: {row['dev_at_w_gap']:+.4f} against unpruned ({'met' if row['goal_equal_time'] else 'not met'})"
        )
    if not rows:
        return None
    best = min(rows, key=lambda p: rows[p]["curve_mean"])
    print(
        f"best anytime curve (the lowest mean of dev@25/50/75/100%): {best} ({rows[best]['curve_mean']:.4f})"
    )
    return best


def draw(data: dict[str, Any], rows: dict[str, dict[str, Any]], path: Path) -> None:
    """Mean best dev against the share of W, a step curve per pruner from every completion time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: list[Run] = data["runs"]
    walls = {r["seed"]: float(r["wall_s"]) for r in runs if r["pruner"] == "none"}
    end = max([1.0, *(float(r["wall_s"]) / walls[r["seed"]] for r in runs if r["seed"] in walls)])
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for pruner in rows:
        mine = [r for r in runs if r["pruner"] == pruner and r["seed"] in walls]
        # Up to `end` only: a stopped sweep's workers may finish a trial after W.
        times = {float(c["t_s"]) / walls[r["seed"]] for r in mine for c in r["completions"]}
        shares = sorted({share for share in times if share < end} | {end})
        xs, ys = [], []
        for share in shares:  # the mean is drawn from the moment every seed has a complete trial
            values = [best_by(r, share * walls[r["seed"]]) for r in mine]
            if all(v is not None for v in values):
                xs.append(share)
                ys.append(mean(float(v) for v in values if v is not None))
        ax.step(xs, ys, where="post", label=pruner, linewidth=2 if pruner == "none" else 1.5)
    target = mean(
        float(r["best_dev"]) for r in runs if r["pruner"] == "none" and r["best_dev"] is not None
    )
    ax.axhline(
        target,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"unpruned final best ({target:.4f})",
    )
    ax.axvline(
        REACH_GOAL, color="grey", linestyle=":", linewidth=1, label=f"goal: {REACH_GOAL:.0%} of W"
    )
    low, high = ax.get_ylim()
    if low <= 2.2 <= high:
        ax.axhline(2.2, color="red", linestyle="-.", linewidth=1, label="dev 2.2")
    ax.set_xlim(0, end)
    ax.set_xlabel("share of the unpruned sweep's wall time W")
    ax.set_ylabel(f"best dev loss so far (mean over {len(walls)} seeds)")
    budget = {"time": "pruned sweeps stopped at W", "trials": f"{data['n_trials']} trials each"}[
        data["budget"]
    ]
    ax.set_title(f"{STUDY}: best dev over time ({data['n_trials']} trials unpruned; {budget})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure: {path}")


def report(data: dict[str, Any], figure: Path) -> dict[str, Any]:
    rows = summarise(data["runs"], data["pruners"])
    best = print_report(data, rows)
    if rows:
        draw(data, rows, figure)
    return {"rows": rows, "best_anytime_curve": best}


# -- the command ----------------------------------------------------------------------------
def main() -> None:
    # Started in the background (`... &`), a shell leaves SIGINT ignored, and the sweeps would
    # inherit that: they could not be stopped at W as with Ctrl-C. Hear it again (children too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pruners",
        default="none,median,successive_halving,hyperband,patient",
        help="comma-separated; none is always run first",
    )
    parser.add_argument("--seeds", default="1337,1338,1339", help="sampler seeds, comma-separated")
    parser.add_argument(
        "--n-trials",
        type=int,
        default=30,
        help="trials of the unpruned sweep (and of each pruned one with --budget trials)",
    )
    parser.add_argument(
        "--budget",
        choices=("time", "trials"),
        default="time",
        help="time: pruned sweeps stop at W; trials: at n_trials",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="with --budget time, a pruned sweep's n_trials (default 4 × --n-trials)",
    )
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
        "--workdir", type=Path, default=Path("bench-pruners") / time.strftime("%Y%m%d-%H%M%S")
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="extra Hydra override for every run (repeatable)",
    )
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "pruners.png")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="print and draw a saved bench_pruners.json; run nothing",
    )
    args = parser.parse_args()

    if args.from_json:
        report(json.loads(args.from_json.read_text()), args.figure)
        return

    from makemore_sweep.sweeper.study import PRUNERS

    pruners = [p.strip() for p in args.pruners.split(",") if p.strip()]
    unknown = [p for p in pruners if p not in PRUNERS]
    if unknown:
        raise SystemExit(f"--pruners: unknown {', '.join(unknown)}; known: {', '.join(PRUNERS)}")
    pruners = [
        "none",
        *(p for p in dict.fromkeys(pruners) if p != "none"),
    ]  # none sets W, so it runs first
    workdir = args.workdir.resolve()
    data: dict[str, Any] = {
        "study": STUDY,
        "n_trials": args.n_trials,
        "max_trials": args.max_trials or 4 * args.n_trials,
        "steps": args.steps,
        "budget": args.budget,
        "seeds": [int(s) for s in args.seeds.split(",")],
        "pruners": pruners,
        "overrides": args.override,
        "host": platform.node(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "runs": [],
    }
    out = workdir / "bench_pruners.json"
    for seed in data["seeds"]:
        base = run_pruner(
            workdir / f"seed-{seed}" / "none", "none", seed, args.n_trials, None, args
        )
        data["runs"].append(base)
        out.write_text(
            json.dumps(data, indent=2) + "\n"
        )  # after every sweep: an interrupted benchmark keeps its runs
        for pruner in pruners[1:]:
            timed = args.budget == "time"
            n_trials = data["max_trials"] if timed else args.n_trials
            run = run_pruner(
                workdir / f"seed-{seed}" / pruner,
                pruner,
                seed,
                n_trials,
                base["wall_s"] if timed else None,
                args,
            )
            data["runs"].append(run)
            out.write_text(json.dumps(data, indent=2) + "\n")
    data["summary"] = report(data, args.figure)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"details: {out}")


if __name__ == "__main__":
    main()
