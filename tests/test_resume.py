"""Killing a run and continuing it with `makemore-train resume=RUN_DIR`.

A run is killed with SIGKILL right after its first checkpoint, resumed, stopped again with
SIGTERM (the signal SLURM and `kill` send), and resumed to the end. The finished run must look
like one that was never interrupted: all its steps, a complete metrics.json, one W&B run id
and the CSV curve of every part. On CPU it must end with the same numbers, to 1e-6, wherever
it was killed.
"""

from __future__ import annotations

import csv
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from cli_checks import assert_clean_failure
from conftest import REPO_ROOT, train_cli
from run_watch import WAIT_S, start_training, wait_for_checkpoint_step
from wandb_records import exit_codes, run_files

from makemore_sweep.errors import ConfigError, UserError
from makemore_sweep.model.checkpoints import LAST_CHECKPOINT
from makemore_sweep.training.metrics_file import read_metrics
from makemore_sweep.training.resume import checkpoint_to_resume
from makemore_sweep.training.resume_command import RunFinished, expand_resume_argument, override_key

MAX_STEPS = 600
VAL_EVERY = 100
# A small, fast model: the test is about stopping and continuing, not about the loss.
RUN_ARGS = [
    f"trainer.max_steps={MAX_STEPS}",
    f"trainer.val_every_n_steps={VAL_EVERY}",
    "data.batch_size=32",
    "model.n_hidden=32",
]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_kind_of_result(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    last = run_dir / LAST_CHECKPOINT

    first = start_training(
        [f"data.path={names_path}", *RUN_ARGS, f"hydra.run.dir={run_dir}"], tmp_path, run_env
    )
    killed_at = wait_for_checkpoint_step(first, last, after_step=0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    assert killed_at < MAX_STEPS

    second = start_training([f"resume={run_dir}"], tmp_path, run_env)
    stopped_at = wait_for_checkpoint_step(second, last, after_step=killed_at)
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=WAIT_S)
    stopped = subprocess.CompletedProcess(second.args, second.returncode, out, err)
    message = assert_clean_failure(stopped, f"resume={run_dir}")
    assert "interrupted" in message
    interrupted = read_metrics(run_dir)
    assert interrupted["state"] == "interrupted"
    assert stopped_at <= interrupted["steps"] < MAX_STEPS

    third = train_cli([f"resume={run_dir}"], cwd=tmp_path, env=run_env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "Restored all states" in third.stdout + third.stderr

    metrics = read_metrics(run_dir)
    assert metrics["state"] == "completed" and metrics["error"] is None
    assert metrics["steps"] == MAX_STEPS
    assert [step for step, _ in metrics["val_history"]] == list(
        range(VAL_EVERY, MAX_STEPS + 1, VAL_EVERY)
    )
    assert metrics["val_loss"] is not None and metrics["val_loss"] < metrics["init_loss"]
    assert metrics["samples"]

    # One W&B run continued three times: the same id, the stopped part closed as failed,
    # the last part closed as successful.
    parts = run_files(run_dir)
    assert len(parts) == 3 and len({p.name for p in parts}) == 1
    assert exit_codes(parts[1]) == [1]
    assert exit_codes(parts[2]) == [0]

    # The CSV curves before each resumption are kept, not overwritten.
    csv_dir = run_dir / "csv"
    assert (csv_dir / "metrics.part1.csv").is_file() and (csv_dir / "metrics.part2.csv").is_file()
    assert "val_loss" in (csv_dir / "metrics.part1.csv").read_text()


def test_resume_replays_the_saved_overrides_and_lets_new_ones_win(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        "- trainer.max_steps=600\n- optim=sgd\n- ckpt_path=last\n"
    )
    (run_dir / LAST_CHECKPOINT).parent.mkdir()
    (run_dir / LAST_CHECKPOINT).write_bytes(b"")
    argv = expand_resume_argument([f"resume={run_dir}", "trainer.max_steps=900"])
    assert argv == [
        "optim=sgd",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
        "trainer.max_steps=900",
    ]
    assert [override_key(o) for o in ("+a.b=1", "~c", "++d=2", "optim=sgd")] == [
        "a.b",
        "c",
        "d",
        "optim",
    ]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: None, "no such folder"),
        (lambda d: d.mkdir(), "not a makemore-train output folder"),
        (
            lambda d: (
                (d / ".hydra").mkdir(parents=True)
                or (d / ".hydra" / "overrides.yaml").write_text("[]\n")
            ),
            "nothing to resume",
        ),
    ],
    ids=["no-folder", "not-a-run", "no-checkpoint"],
)
def test_resume_of_something_that_cannot_be_resumed_says_why(
    make, words: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    make(run_dir)
    with pytest.raises(ConfigError, match=words):
        expand_resume_argument([f"resume={run_dir}"])


def test_resume_is_not_for_multirun(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multirun"):
        expand_resume_argument(["-m", f"resume={tmp_path}"])


def test_ckpt_path_last_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resume=RUN_DIR"):
        checkpoint_to_resume("last", tmp_path)
    assert checkpoint_to_resume(None, tmp_path) is None


def test_a_checkpoint_carrying_code_is_refused_before_resuming(tmp_path: Path) -> None:
    payload_ran = tmp_path / "payload-ran"
    checkpoint = tmp_path / LAST_CHECKPOINT
    checkpoint.parent.mkdir()
    torch.save({"state_dict": {}, "trap": _Trap(payload_ran)}, checkpoint)
    with pytest.raises(UserError, match="refused"):
        checkpoint_to_resume("last", tmp_path)
    assert not payload_ran.exists()


class _Trap:
    """Unpickling this would create a file: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# Dropout and AdamW: the resumed run needs the global torch RNG, the sampler's own generator and
# the optimiser's moments exactly as they were; the one-cycle schedule needs the step count.
EXACT_ARGS = [
    "trainer.max_steps=1200",
    "trainer.val_every_n_steps=150",
    "model.n_hidden=32",
    "model.dropout=0.2",
    "logger=csv",
]
COMPARED = (
    "val_loss",
    "test_loss",
    "train_loss",
    "init_loss",
    "steps",
    "best_step",
    "steps_to_target",
    "samples",
    "novel_fraction",
)


@pytest.fixture(scope="module")
def uninterrupted(names_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os

    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    result = train_cli(
        [f"data.path={names_path}", *EXACT_ARGS, f"hydra.run.dir={run_dir}"], REPO_ROOT, env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_metrics(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 750], ids=["first-checkpoint", "late-checkpoint"])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(
    kill_after: int, uninterrupted: dict, names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    first = start_training(
        [f"data.path={names_path}", *EXACT_ARGS, f"hydra.run.dir={run_dir}"], tmp_path, run_env
    )
    killed_at = wait_for_checkpoint_step(first, run_dir / LAST_CHECKPOINT, after_step=kill_after)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert killed_at < 1200

    resumed = train_cli([f"resume={run_dir}"], cwd=tmp_path, env=run_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    metrics = read_metrics(run_dir)
    assert metrics["resumed_from_step"] == killed_at
    assert [s for s, _ in metrics["val_history"]] == [s for s, _ in uninterrupted["val_history"]]
    for (_, got), (_, want) in zip(
        metrics["val_history"], uninterrupted["val_history"], strict=True
    ):
        assert got == pytest.approx(want, abs=1e-6)
    for key in COMPARED:
        assert metrics[key] == pytest.approx(uninterrupted[key], abs=1e-6), key


def logged_rates(run_dir: Path) -> dict[int, float]:
    """step → learning rate, from the CSV curves of every part of a run."""
    rates = {}
    for path in sorted((run_dir / "csv").glob("metrics*.csv")):
        with path.open() as handle:
            rates.update(
                {
                    int(float(row["step"])): float(row["lr"])
                    for row in csv.DictReader(handle)
                    if row.get("lr")
                }
            )
    return rates


@pytest.mark.slow
def test_a_longer_resume_follows_the_original_schedule_then_holds_its_final_rate(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    """The lectures' step schedule planned for 300 steps (0.1, then 0.01 from step 150), resumed to 500."""
    run_dir = tmp_path / "run"
    args = [
        f"data.path={names_path}",
        "optim=sgd",
        "trainer.max_steps=300",
        "trainer.val_every_n_steps=100",
        "model.n_hidden=32",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    assert train_cli(args, tmp_path, run_env).returncode == 0
    longer = train_cli([f"resume={run_dir}", "trainer.max_steps=500"], tmp_path, run_env)
    assert longer.returncode == 0, longer.stdout + longer.stderr
    metrics = read_metrics(run_dir)
    assert metrics["steps"] == 500 and metrics["resumed_from_step"] == 300
    assert [s for s, _ in metrics["val_history"]] == [100, 200, 300, 400, 500]
    rates = logged_rates(run_dir)
    # A fresh 500-step plan would still be at 0.1 until step 250; the resumed run keeps its own.
    assert rates[100] == pytest.approx(0.1) and rates[200] == pytest.approx(0.01)
    assert all(rates[s] == pytest.approx(0.01) for s in (350, 400, 450, 500))

    # Finished at 500: a shorter budget has nothing to do (tests/test_resume_trial.py runs that answer).
    with pytest.raises(RunFinished):
        expand_resume_argument([f"resume={run_dir}", "trainer.max_steps=400"])


@pytest.mark.slow
def test_a_longer_resume_of_a_schedule_that_ends_at_rate_zero_is_refused(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    args = [
        f"data.path={names_path}",
        "trainer.max_steps=100",
        "trainer.val_every_n_steps=100",
        "model.n_hidden=32",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    assert train_cli(args, tmp_path, run_env).returncode == 0
    longer = train_cli([f"resume={run_dir}", "trainer.max_steps=200"], tmp_path, run_env)
    message = assert_clean_failure(longer, "trainer.max_steps=200")
    assert "onecycle" in message and "rate of 0" in message
    assert read_metrics(run_dir)["steps"] == 100  # the finished run is left as it was


@pytest.mark.parametrize(
    "masked",
    ["+study.api_token=***", "hydra.sweeper.storage=postgresql://optuna:***@db.example/optuna"],
)
def test_a_masked_secret_is_never_replayed(masked: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- trainer.max_steps=600\n- {masked}\n")
    (run_dir / LAST_CHECKPOINT).parent.mkdir()
    (run_dir / LAST_CHECKPOINT).write_bytes(b"")
    key = override_key(masked)
    with pytest.raises(ConfigError, match=f"give it again next to resume= \\({key}=\\.\\.\\.\\)"):
        expand_resume_argument([f"resume={run_dir}"])
    given = f"{key}=${{oc.env:SECRET_FROM_ENV}}"
    argv = expand_resume_argument([f"resume={run_dir}", given])
    assert given in argv and not any("***" in arg for arg in argv)


def test_a_resumed_run_reads_its_checkpoint_once(
    names_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint check, the plan check and Lightning's restore share one read (issue 25)."""
    from makemore_sweep import train

    run_dir = tmp_path / "run"
    args = [f"data.path={names_path}", *RUN_ARGS, "optim=sgd", "logger=none"]  # a step schedule
    first = train([*args, "trainer.max_steps=200"], output_dir=run_dir)
    assert first["steps"] == 200
    reads: list[Path] = []
    real_load = torch.load

    def counting_load(source: object, *args: object, **kwargs: object) -> object:
        # A path, or the open file Lightning reads through fsspec (its `path` or `name`).
        name = source if isinstance(source, str | Path) else None
        name = name or getattr(source, "path", None) or getattr(source, "name", None)
        if isinstance(name, str | Path) and Path(name).name == LAST_CHECKPOINT.name:
            reads.append(Path(name))
        return real_load(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", counting_load)
    resumed = train([*args, "trainer.max_steps=300", "ckpt_path=last"], output_dir=run_dir)
    assert resumed["resumed_from_step"] == 200 and resumed["steps"] == 300
    assert reads == [run_dir / LAST_CHECKPOINT]
