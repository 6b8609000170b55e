"""The comparison printed at the end of a grid multirun (`makemore-train -m model.n_hidden=50,100`).

One row per job: the overrides that differ between the jobs, dev loss, test loss, training time
and parameters, best dev loss first and the best marked, in plain lines like the Optuna sweep's
end summary (sweeper/results.py), readable in a terminal, a CI log and a SLURM output
file alike. The jobs are read from their folders (metrics.json, .hydra/overrides.yaml) by the
report's multirun source, as `makemore-report multirun/DATE/TIME` reads them.

`MultirunTable` is a Hydra callback (`hydra.callbacks` in conf/train.yaml). Hydra builds its
callbacks in every makemore-train process, the sweep process of an Optuna sweep included, which
never loads the training stack: the report is imported only when a table is printed. The Optuna
sweeper (`sweep=NAME`) prints its own summary, so the table is for Hydra's basic sweeper only.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from makemore_sweep.training.metrics_file import METRICS_FILE

if TYPE_CHECKING:
    from makemore_sweep.report.sources import TrialRecord

GRID_SWEEPER = "basic"  # the `hydra/sweeper` choice of a plain `-m` grid
PREFIX = "[multirun]"
BEST_MARK = "*"
COLUMNS = ("job", "dev loss", "test loss", "train time", "params", "overrides")


class MultirunTable(Callback):
    """Prints the table of a basic-sweeper multirun's jobs once they have all returned."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out  # None: stdout at the time of printing

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.runtime.choices.get("hydra/sweeper") != GRID_SWEEPER:
            return
        cwd = Path(str(config.hydra.runtime.cwd))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        for line in multirun_table(sweep_dir if sweep_dir.is_absolute() else cwd / sweep_dir, cwd):
            print(line, file=self.out, flush=True)


# What makemore-train lets Hydra build from `hydra.callbacks` (the execution whitelist of its
# @hydra.main): Hydra 1.4 warns about a callback built without one, and Hydra 1.5 refuses it.
HYDRA_CALLBACK_TARGETS = [f"{MultirunTable.__module__}.{MultirunTable.__qualname__}"]


def multirun_table(sweep_dir: Path, cwd: Path) -> list[str]:
    """The table's lines; none when no job wrote metrics.json (nothing to compare: an interrupted
    start, or `task=lr_find`, whose jobs write lr_find.json)."""
    if not any(sweep_dir.glob(f"*/{METRICS_FILE}")):
        return []
    from makemore_sweep.report.multirun_source import load_multirun_source

    source = load_multirun_source(sweep_dir)
    best = source.best
    ranked = source.ranked()
    rows = [list(COLUMNS), *(job_row(trial) for trial in ranked)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    shown = shown_path(sweep_dir, cwd)
    lines = [
        f"{PREFIX} {len(ranked)} jobs in {shown}, best dev loss first ({BEST_MARK}: the best):"
    ]
    for trial, row in zip([None, *ranked], rows):
        mark = BEST_MARK if trial is not None and trial is best else " "
        # Numbers right-aligned so that their digits line up; the job and its overrides left.
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])),
            row[-1],
        ]
        lines.append(f"{PREFIX} {mark} {'  '.join(cells)}".rstrip())
    compare = f"compare them: makemore-report {shlex.quote(shown)}"
    if best is None:
        lines.append(f"{PREFIX} no job completed; {compare}")
    else:
        run = shown_path(best.run_dir, cwd) if best.run_dir else job_label(best)
        lines.append(
            f"{PREFIX} best: job {job_label(best)}, dev {best.value:.4f}, in {run}; {compare}"
        )
    return lines


def job_row(trial: TrialRecord) -> list[str]:
    """job, dev, test, train time, params, overrides; a job that did not complete shows its state."""
    metrics = trial.metrics
    dev = _number(trial.dev_loss, ".4f")
    if trial.state != "COMPLETE":
        state = str(metrics.get("state") or f"no {METRICS_FILE}")
        dev = state if trial.dev_loss is None else f"{dev} ({state})"
    overrides = " ".join(f"{key}={value}" for key, value in trial.params.items()) or "—"
    return [
        job_label(trial),
        dev,
        _number(metrics.get("test_loss"), ".4f"),
        _seconds(metrics.get("train_time_s")),
        _number(metrics.get("n_params"), ","),
        overrides,
    ]


def job_label(trial: TrialRecord) -> str:
    """The job's folder name (0, 1, ...): what the user finds under the sweep folder."""
    return trial.run_dir.name if trial.run_dir else str(trial.number)


def _number(value: Any, spec: str) -> str:
    return "—" if not isinstance(value, int | float) else format(value, spec)


def _seconds(value: Any) -> str:
    return "—" if not isinstance(value, int | float) else f"{value:.1f} s"


def shown_path(path: Path, cwd: Path) -> str:
    """`path` relative to the folder the command ran in when it lies below it (as it was typed)."""
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)
