"""The report's figures as PNG files (matplotlib, no display needed).

Each figure function returns a `Figure` or raises `FigureSkipped` with the reason in words,
which the report shows in place of the figure (e.g. "needs two completed trials").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # optuna's plots go through pyplot; never open a window

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from makemore_sweep.config.sweep_settings import DEV_LOSS
from makemore_sweep.model.checkpoints import BEST_CHECKPOINT, network_from_checkpoint
from makemore_sweep.report.embeddings import draw_embeddings, embedding_table, project_to_2d
from makemore_sweep.report.sources import ReportSource, dev_loss_curve

TARGET_LOSS = 2.2
# Dev losses published in the makemore lectures, on the same split (see DESIGN.md).
REFERENCE_LOSSES = {
    "bigram": 2.453,
    "lecture MLP": 2.17,
    "lecture BatchNorm MLP": 2.106,
    "lecture flat MLP, context 8": 2.027,
    "lecture WaveNet": 1.993,
}
BIGRAM_REFERENCE = REFERENCE_LOSSES["bigram"]
N_CURVES = 5
MULTI_OBJECTIVE_ONLY = {"pareto"}
DPI = 100


class FigureSkipped(Exception):
    """The figure cannot be drawn for this study; the message says why."""


@dataclass(frozen=True)
class ReportFigure:
    name: str  # file stem: NAME.png
    title: str
    caption: str
    path: Path | None = None  # None when skipped
    skipped: str | None = None


def _new_figure(width: float = 7, height: float = 4.4) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def history_figure(source: ReportSource) -> Figure:
    """Dev loss of each trial in order, the best so far, the 2.2 target and the lectures' numbers."""
    done = sorted(source.completed, key=lambda t: t.number)
    if not done:
        raise FigureSkipped("no trial has completed yet")
    figure = _new_figure()
    ax = figure.add_subplot()
    numbers = [t.number for t in done]
    values = [float(t.value) for t in done]  # type: ignore[arg-type]
    ax.scatter(numbers, values, color="#3b6ea5", zorder=3, label="trial dev loss")
    ax.step(
        numbers,
        np.minimum.accumulate(values),
        where="post",
        color="#c0392b",
        linewidth=2,
        label="best so far",
    )
    ax.axhline(TARGET_LOSS, color="#27ae60", linewidth=2, label=f"target {TARGET_LOSS}")
    for label, loss in REFERENCE_LOSSES.items():
        ax.axhline(loss, color="#7f8c8d", linestyle="--", linewidth=1)
        # x in axes fractions, y in data: the label sits on its line at the left edge.
        ax.text(
            0.01,
            loss,
            f"{label} {loss}",
            transform=ax.get_yaxis_transform(),
            va="bottom",
            fontsize=8,
            color="#555555",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("dev loss (best of the run)")
    ax.set_title(f"optimisation history · {source.title}", loc="left")
    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default AutoLocator is one
        locator.set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return figure


def _optuna_figure(plot: Callable[[], object]) -> Figure:
    """Run one of optuna.visualization.matplotlib's plots and return its figure.

    Those plots switch pyplot's global style; rc_context puts it back afterwards.
    """
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        result = plot()
    axes = result.flat[0] if isinstance(result, np.ndarray) else result  # Axes, or a grid of them
    figure = axes.get_figure(root=True) if isinstance(axes, Axes) else None
    if figure is None:
        raise TypeError(f"an Optuna plot returned {type(result).__name__}, not matplotlib Axes")
    figure.set_dpi(DPI)
    return figure


def _require_search(source: ReportSource, min_completed: int) -> None:
    if not source.param_names:
        raise FigureSkipped("the runs share the same settings: nothing was searched")
    if len(source.completed) < min_completed:
        raise FigureSkipped(
            f"needs {min_completed} completed trials, the study has {len(source.completed)}"
        )


def _dev_loss_target(source: ReportSource) -> dict[str, Any]:
    """Keyword arguments that point optuna's plots at the dev loss, also in a multi-objective study."""
    if not source.multi_objective:
        return {"target_name": "dev loss"}
    index = source.objectives.index(DEV_LOSS) if DEV_LOSS in source.objectives else 0
    return {"target": lambda trial: trial.values[index], "target_name": "dev loss"}


def parallel_coordinates_figure(source: ReportSource) -> Figure:
    _require_search(source, 1)
    plot = optuna.visualization.matplotlib.plot_parallel_coordinate
    figure = _optuna_figure(lambda: plot(source.study, **_dev_loss_target(source)))
    figure.set_size_inches(max(6, 2.2 * (len(source.param_names) + 1)), 4.8)
    return figure


def importances_figure(source: ReportSource) -> Figure:
    _require_search(source, 2)
    values = {t.value for t in source.completed}
    if len(values) < 2:
        raise FigureSkipped("all completed trials have the same dev loss")
    try:
        with warnings.catch_warnings():
            # Optuna warns that a `target` is taken as lower-is-better: the dev loss is.
            warnings.filterwarnings(
                "ignore", message=r".*computes the importances of params to achieve low"
            )
            plot = optuna.visualization.matplotlib.plot_param_importances
            figure = _optuna_figure(lambda: plot(source.study, **_dev_loss_target(source)))
    except (ValueError, RuntimeError) as error:
        raise FigureSkipped(f"Optuna cannot rank the parameters yet ({error})") from error
    figure.set_size_inches(7, max(3, 0.6 * len(source.param_names) + 2))
    return figure


def slices_figure(source: ReportSource) -> Figure:
    _require_search(source, 1)
    figure = _optuna_figure(
        lambda: optuna.visualization.matplotlib.plot_slice(source.study, **_dev_loss_target(source))
    )
    figure.set_size_inches(min(16, max(6, 3.6 * len(source.param_names))), 4.2)
    return figure


def curves_figure(source: ReportSource, n_curves: int = N_CURVES) -> Figure:
    """Dev-loss curves of the best trials from their CSV logs, with the bigram baseline as a line."""
    figure = _new_figure()
    ax = figure.add_subplot()
    drawn = 0
    bigram: tuple[int, float] | None = None  # the best bigram run: trial number, dev loss
    for trial in source.ranked():
        if trial.value is None:
            continue
        if trial.counted:
            bigram = bigram or (trial.number, trial.value)
            continue
        points = dev_loss_curve(trial)
        if drawn < n_curves and points:
            steps, losses = zip(*points, strict=True)
            ax.plot(
                steps,
                losses,
                marker="o",
                markersize=3,
                label=f"trial {trial.number}: {trial.value:.4f}",
            )
            drawn += 1
    if drawn == 0:
        raise FigureSkipped(
            "no completed trial has a learning curve (csv/metrics.csv or val_history)"
        )
    if bigram is not None:
        number, loss = bigram
        ax.axhline(
            loss,
            color="#7f8c8d",
            linestyle="--",
            label=f"bigram baseline (trial {number}): {loss:.4f}",
        )
    else:
        ax.axhline(
            BIGRAM_REFERENCE,
            color="#7f8c8d",
            linestyle="--",
            label=f"bigram baseline {BIGRAM_REFERENCE}",
        )
    ax.axhline(TARGET_LOSS, color="#27ae60", linewidth=2, label=f"target {TARGET_LOSS}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("dev loss")
    ax.set_title(f"dev-loss curves of the {drawn} best trials", loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def pareto_figure(source: ReportSource) -> Figure:
    """Dev loss against the second objective (e.g. n_params), the Pareto front highlighted."""
    dev = source.objectives.index(DEV_LOSS) if DEV_LOSS in source.objectives else 0
    other = next(i for i in range(len(source.objectives)) if i != dev)
    # (trial number, objective values) of the completed trials
    done = [(t.number, t.values) for t in source.completed if t.values is not None]
    if not done:
        raise FigureSkipped("no trial has completed yet")
    front_numbers = set(source.pareto_front)
    front = sorted((d for d in done if d[0] in front_numbers), key=lambda d: d[1][other])
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.scatter(
        [values[other] for _, values in done],
        [values[dev] for _, values in done],
        color="#9fb3c8",
        zorder=2,
        label="trial",
    )
    xs, ys = [values[other] for _, values in front], [values[dev] for _, values in front]
    ax.step(xs, ys, where="post", color="#c0392b", linewidth=1.5, zorder=3)
    ax.scatter(xs, ys, color="#c0392b", zorder=4, label=f"Pareto front ({len(front)} trials)")
    for (number, _), x, y in zip(front, xs, ys, strict=True):
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    positive = [values[other] for _, values in done if values[other] > 0]
    if len(positive) == len(done) and max(positive) / min(positive) >= 100:
        ax.set_xscale("log")  # parameter counts span decades
    ax.axhline(TARGET_LOSS, color="#27ae60", linewidth=2, label=f"target {TARGET_LOSS}")
    for label, loss in REFERENCE_LOSSES.items():
        ax.axhline(loss, color="#7f8c8d", linestyle="--", linewidth=1)
        ax.text(
            0.01,
            loss,
            f"{label} {loss}",
            transform=ax.get_yaxis_transform(),
            va="bottom",
            fontsize=8,
            color="#555555",
        )
    ax.set_xlabel(source.objectives[other])
    ax.set_ylabel("dev loss (best of the run)")
    ax.set_title(f"Pareto front · {source.title}", loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return figure


def embeddings_figure(source: ReportSource) -> Figure:
    """The best trial with an embedding table (the bigram has none), in 2-D."""
    for trial in source.ranked():
        if (
            trial.value is None
            or trial.run_dir is None
            or not (trial.run_dir / BEST_CHECKPOINT).is_file()
        ):
            continue
        model = network_from_checkpoint(trial.run_dir / BEST_CHECKPOINT)
        table = embedding_table(model.network, len(model.vocab))
        if table is None:
            continue
        figure = _new_figure(6.4, 5.8)
        how = "PCA of " if table.shape[1] > 2 else ""
        title = f"{how}character embeddings (n_embd={table.shape[1]}), trial {trial.number}"
        draw_embeddings(figure.add_subplot(), project_to_2d(table, model.vocab), title)
        return figure
    raise FigureSkipped("no completed trial has a checkpoint with an embedding table")


FIGURES: list[tuple[str, str, str, Callable[[ReportSource], Figure]]] = [
    ("history", "Optimisation history", "Dev loss of every completed trial, the best so far, the 2.2 target and the lectures' published dev losses.", history_figure),
    ("curves", "Learning curves", "Dev loss during training of the best trials (from their CSV logs), against the bigram baseline.", curves_figure),
    ("parallel_coordinates", "Parallel coordinates", "Each line is a trial; colour is its dev loss.", parallel_coordinates_figure),
    ("importances", "Parameter importances", "How much of the variation in dev loss each searched parameter explains (Optuna's default evaluator).", importances_figure),
    ("slices", "Slice plots", "Dev loss against each searched parameter; colour is the trial number.", slices_figure),
    ("pareto", "Pareto front", "Every completed trial's dev loss against the study's other objective; the trials no other trial beats on both are joined and labelled.", pareto_figure),
    ("embeddings", "Character embeddings of the best model", "The best model's embedding table in two dimensions (principal components when n_embd > 2), as in the lecture.", embeddings_figure),
]  # fmt: skip


def write_figures(source: ReportSource, out_dir: Path) -> list[ReportFigure]:
    """Draw every figure into OUT_DIR/NAME.png; a figure that cannot be drawn says why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, title, caption, draw in FIGURES:
        if name in MULTI_OBJECTIVE_ONLY and not source.multi_objective:
            continue
        try:
            figure = draw(source)
        except FigureSkipped as skipped:
            results.append(ReportFigure(name, title, caption, skipped=str(skipped)))
            continue
        path = out_dir / f"{name}.png"
        # "tight" keeps the long parameter names of optuna's plots inside the picture.
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(figure)  # optuna's figures live in pyplot's registry until closed
        results.append(ReportFigure(name, title, caption, path=path))
    return results
