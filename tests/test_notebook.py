"""docs/notebook.ipynb runs top to bottom in a real Jupyter kernel (the notebook API end to end)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT, skip_or_fail

pytestmark = pytest.mark.slow
NOTEBOOK = REPO_ROOT / "docs" / "notebook.ipynb"


def test_the_notebook_trains_compares_plots_and_samples(
    names_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as error:
        skip_or_fail(f"{error.name} is not installed (pip install -e '.[dev]')")
    # The kernel inherits this process's environment: the names file, W&B offline.
    monkeypatch.setenv("MAKEMORE_NAMES", str(names_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    for name in ("mlp_bn", "mlp"):
        metrics = json.loads((tmp_path / "notebook-runs" / name / "metrics.json").read_text())
        assert metrics["steps"] == 300 and metrics["state"] == "completed"
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    text = "".join(output.get("text", "") for output in outputs)
    assert "BatchNorm MLP" in text and "MLP, no BatchNorm" in text
    assert "from the checkpoint:" in text
    [png] = [
        output.data["image/png"] for output in outputs if "image/png" in output.get("data", {})
    ]
    assert base64.b64decode(png).startswith(b"\x89PNG")
