"""The character embedding table in two dimensions, as plotted in the makemore lectures.

Used by the report (best model of a study) and at the end of every run (logged to W&B).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from makemore_sweep.model.network_interface import embedding_weights

if TYPE_CHECKING:
    from matplotlib.axes import Axes

EMBEDDING_PNG = "embeddings.png"


@dataclass(frozen=True)
class EmbeddingPoints:
    """One 2-D point per vocabulary character, and how the two axes were obtained."""

    chars: list[str]
    xy: np.ndarray  # (vocab, 2)
    axis_labels: tuple[str, str]


def embedding_table(network: nn.Module, vocab_size: int) -> np.ndarray | None:
    """The (vocab, n_embd) embedding weights, or None for networks without one (the bigram):
    what the network says through the network contract (model/network_interface.py)."""
    weights = embedding_weights(network, vocab_size)
    return None if weights is None else weights.detach().cpu().double().numpy()


def project_to_2d(table: np.ndarray, chars: list[str]) -> EmbeddingPoints:
    """Two dimensions as they are when n_embd ≤ 2, otherwise the first two principal components."""
    dims = table.shape[1]
    if dims == 1:
        return EmbeddingPoints(
            chars, np.column_stack([table[:, 0], np.zeros(len(table))]), ("dim 0", "")
        )
    if dims == 2:
        return EmbeddingPoints(chars, table.copy(), ("dim 0", "dim 1"))
    centred = table - table.mean(axis=0)
    # PCA by SVD of the centred table: rows of vt are the principal directions.
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / max(float((singular**2).sum()), 1e-12)
    xy = centred @ vt[:2].T
    return EmbeddingPoints(chars, xy, (f"PC 1 ({explained[0]:.0%})", f"PC 2 ({explained[1]:.0%})"))


def draw_embeddings(ax: Axes, points: EmbeddingPoints, title: str) -> None:
    """The lecture's plot: a large dot per character with the character written on it."""
    ax.scatter(points.xy[:, 0], points.xy[:, 1], s=260, color="#3b6ea5")
    for (x, y), char in zip(points.xy, points.chars, strict=True):
        ax.text(x, y, char, ha="center", va="center", color="white", fontsize=10, fontweight="bold")
    ax.set_xlabel(points.axis_labels[0])
    ax.set_ylabel(points.axis_labels[1])
    ax.set_title(title)
    ax.grid(alpha=0.3)


def save_embedding_plot(
    network: nn.Module, chars: list[str], path: Path, title: str
) -> Path | None:
    """Write the plot as a PNG; None when the network has no embedding table."""
    table = embedding_table(network, len(chars))
    if table is None:
        return None
    from matplotlib.figure import Figure  # a bare Figure needs no GUI backend

    figure = Figure(figsize=(6, 5.5), dpi=100, layout="constrained")
    draw_embeddings(figure.add_subplot(), project_to_2d(table, chars), title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def plot_run_embeddings(run_dir: Path) -> Path | None:
    """RUN_DIR/embeddings.png from the run's best checkpoint; None without checkpoint or embedding."""
    from makemore_sweep.model.checkpoints import BEST_CHECKPOINT, network_from_checkpoint

    checkpoint = Path(run_dir) / BEST_CHECKPOINT
    if not checkpoint.is_file():
        return None
    model = network_from_checkpoint(checkpoint)
    table = embedding_weights(model.network, len(model.vocab))
    title = f"character embeddings (n_embd={None if table is None else table.shape[1]})"
    return save_embedding_plot(model.network, model.vocab, Path(run_dir) / EMBEDDING_PNG, title)
