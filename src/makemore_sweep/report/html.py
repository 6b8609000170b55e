"""report.html: one self-contained page (figures inlined as base64 PNG, no scripts at all)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from makemore_sweep.report.figures import TARGET_LOSS, ReportFigure
from makemore_sweep.report.sources import ReportSource

REPORT_FILE = "report.html"


def fmt_loss(value: Any) -> str:
    return "—" if value is None else f"{float(value):.4f}"


def fmt_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def breakable(name: str) -> Markup:
    """A parameter name (`optim.weight_decay`) that may wrap after its dots and underscores, so
    that a narrow column header takes two lines instead of widening the table."""
    return Markup("").join(
        escape(part) + (Markup("<wbr>") if part in (".", "_") else "")
        for part in re.split(r"([._])", name)
    )


def fmt_int(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def fmt_seconds(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f} s"


def state_summary(source: ReportSource) -> str:
    """'3 complete, 1 failed' in the words a person would use."""
    words = {
        "COMPLETE": "complete",
        "FAIL": "failed",
        "PRUNED": "pruned",
        "RUNNING": "running",
        "WAITING": "waiting",
    }
    return ", ".join(
        f"{n} {words.get(state, state.lower())}" for state, n in source.state_counts().items()
    )


def render_report(
    source: ReportSource, figures: list[ReportFigure], out_dir: Path, top: int, kind: str
) -> Path:
    environment = Environment(
        loader=PackageLoader("makemore_sweep.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    best = source.best
    images = {
        f.name: base64.b64encode(f.path.read_bytes()).decode("ascii") for f in figures if f.path
    }
    html = template.render(
        title=source.title,
        kind=kind,
        origin=source.origin,
        n_trials=len(source.trials),
        state_summary=state_summary(source),
        best=best,
        best_params=", ".join(f"{k}={fmt_value(v)}" for k, v in best.params.items())
        if best
        else "",
        best_ttt=best.metric("time_to_target_s") if best else None,
        target=TARGET_LOSS,
        n_under_target=sum(t.value < TARGET_LOSS for t in source.completed),  # type: ignore[operator]
        rows=source.ranked()[:top],
        pareto=source.pareto_front if source.multi_objective else [],
        objectives=source.objectives,
        param_names=source.param_names,
        figures=figures,
        images=images,
        generated=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        fmt_loss=fmt_loss,
        fmt_value=fmt_value,
        fmt_int=fmt_int,
        fmt_seconds=fmt_seconds,
        breakable=breakable,
    )
    path = out_dir / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)  # a reader (or a browser reloading) never sees half a page
    return path
