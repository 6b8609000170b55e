"""The one-screen summary printed at the end of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def print_summary(metrics: dict[str, Any], run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    target = metrics.get("target_loss", 2.2)
    table = Table(title=f"makemore run · {run_dir}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    val = metrics["val_loss"]
    verdict = (
        "[green]under target[/]" if val is not None and val < target else "[red]not under target[/]"
    )
    table.add_row("dev loss (best)", f"{_fmt(val)}  {verdict} {target}")
    table.add_row("test loss", _fmt(metrics["test_loss"]))
    table.add_row("train loss", _fmt(metrics["train_loss"]))
    table.add_row("init loss", _fmt(metrics["init_loss"]))
    table.add_row("parameters", f"{metrics['n_params']:,}")
    table.add_row("steps", f"{metrics['steps']:,} (best at {metrics.get('best_step')})")
    table.add_row("training time", f"{_fmt(metrics['train_time_s'], '.1f')} s")
    ttt = metrics["time_to_target_s"]
    table.add_row(f"time to < {target}", "never" if ttt is None else f"{ttt:.1f} s")
    # A pruned run has no samples (null): it was not evaluated.
    table.add_row("samples", ", ".join((metrics.get("samples") or [])[:10]) or "—")
    table.add_row("novel samples", _fmt(metrics.get("novel_fraction"), ".0%"))
    if metrics.get("not_evaluated"):
        table.add_row("not evaluated", str(metrics["not_evaluated"]))
    console.print(table)
