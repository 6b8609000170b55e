"""`makemore-report`: the comparison report of a study or a multirun folder.

    makemore-report --storage URL --study NAME --out DIR    # an Optuna study
    makemore-report MULTIRUN_DIR --out DIR                   # a sweep without Optuna

Writes DIR/report.html (self-contained: opens offline) and DIR/*.png, one per figure.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from makemore_sweep.errors import ConfigError, exit_cleanly_on_user_error

DEFAULT_TOP = 10
STORAGE_HELP = "Optuna storage: sqlite:///FILE, postgresql://user:pw@host/db, or journal:FILE"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="makemore-report",
        description="Build the comparison report (report.html + PNG figures) of an Optuna study or a multirun folder.",
    )
    parser.add_argument(
        "multirun_dir", nargs="?", type=Path, help="a Hydra multirun folder (multirun/DATE/TIME)"
    )
    parser.add_argument("--storage", help=STORAGE_HELP)
    parser.add_argument("--study", help="study name (optional when the storage holds only one)")
    parser.add_argument("--out", type=Path, help="output folder (default: reports/NAME)")
    parser.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        help=f"rows in the top-trials table (default {DEFAULT_TOP})",
    )
    return parser.parse_args(argv)


def default_out_dir(title: str) -> Path:
    return Path("reports") / (re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_") or "report")


@exit_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if (args.storage is None) == (args.multirun_dir is None):
        raise ConfigError(
            "Give either --storage URL (with --study NAME) or a MULTIRUN_DIR, not both and not neither."
        )
    if args.study and not args.storage:
        raise ConfigError("--study needs --storage URL: the study's storage.")
    if args.top < 1:
        raise ConfigError(f"--top {args.top} is invalid: it must be an integer ≥ 1.")

    # Imported here so that --help and argument errors answer at once.
    import optuna

    from makemore_sweep.report.figures import write_figures
    from makemore_sweep.report.html import render_report
    from makemore_sweep.report.multirun_source import load_multirun_source
    from makemore_sweep.report.sources import load_study_source

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.storage:
        source, kind = load_study_source(args.storage, args.study), "study"
    else:
        source, kind = load_multirun_source(args.multirun_dir), "multirun folder"
    out_dir = args.out or default_out_dir(source.title)
    figures = write_figures(source, out_dir)
    report = render_report(source, figures, out_dir, top=args.top, kind=kind)

    best = source.best
    best_text = (
        f"best dev loss {best.value:.4f} (trial {best.number})"
        if best
        else "no completed trial yet"
    )
    drawn = [f.name for f in figures if f.path]
    print(f"{kind} {source.title}: {len(source.trials)} trials, {best_text}")
    if source.multi_objective:
        front = ", ".join(str(n) for n in source.pareto_front) or "empty"
        print(f"Pareto front over {', '.join(source.objectives)}: trials {front}")
    print(f"report: {report}  ({len(drawn)} figures as PNG: {', '.join(drawn)})")
    for figure in figures:
        if figure.skipped:
            print(f"  not drawn: {figure.name} ({figure.skipped})")


if __name__ == "__main__":
    main()
