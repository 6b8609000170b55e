"""A run whose loss blows up stops with one sentence, marks metrics.json failed and closes W&B."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_checks import assert_clean_failure
from conftest import train_cli
from wandb_records import exit_codes, run_files

from makemore_sweep.errors import TrainingDiverged
from makemore_sweep.training.metrics_file import read_metrics


@pytest.mark.slow
def test_sgd_at_an_absurd_learning_rate_stops_as_diverged(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            f"data.path={names_path}",
            "optim.name=sgd",
            "optim.lr=1e9",
            "trainer.max_steps=300",
            "trainer.val_every_n_steps=100",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    message = assert_clean_failure(result, "diverged")
    assert result.returncode == TrainingDiverged.exit_code
    step = int(re.search(r"at step (\d+)", message).group(1))  # type: ignore[union-attr]
    assert 0 < step < 300

    metrics = read_metrics(run_dir)
    assert metrics["state"] == "failed"
    assert f"at step {step}" in metrics["error"]
    assert metrics["steps"] < 300

    # The W&B run was finished, as failed: its record file ends with an exit record, code 1.
    (record_file,) = run_files(run_dir)
    assert exit_codes(record_file) == [1]


def test_diverged_error_survives_pickling() -> None:
    """Launchers such as submitit pickle a job's exception to report it."""
    import pickle

    error = pickle.loads(pickle.dumps(TrainingDiverged(step=7, loss=float("nan"))))
    assert isinstance(error, TrainingDiverged) and error.step == 7
    assert "at step 7" in str(error)
    above_limit = TrainingDiverged(step=3, loss=1e9, limit=100.0)
    assert str(pickle.loads(pickle.dumps(above_limit))) == str(
        above_limit
    )  # the limit survives too
