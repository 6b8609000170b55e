"""`resume=RUN_DIR` continues a single run only: a sweep's trial and a finished run are answered instead.

Issue 18: `resume=multirun/ctrlc4/trial_1`, as the interrupted trial's own message advised,
replayed the trial's overrides without the sweep's study name, started a sweep of the default
study and recorded failed trials there. A trial folder is now refused before anything is
composed, with the sweep command that continues it (run here, to prove the advice right), and a
trial's interrupted message never recommends resume=. A finished run is answered with one line
and exit 0, without training again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import train_cli, train_cli_running
from omegaconf import OmegaConf
from sweep_helpers import STUDY, sweep_args

from makemore_sweep.config.sweep_settings import TRIAL_CONFIG_KEY
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.checkpoint_paths import BEST_CHECKPOINT, LAST_CHECKPOINT
from makemore_sweep.redaction import MASK
from makemore_sweep.training.metrics_file import read_metrics
from makemore_sweep.training.resume_command import (
    RunFinished,
    expand_resume_argument,
    load_saved_yaml,
)

STUDY_A = "ctrlc_a"  # the interrupted sweep; STUDY (beat_2p2, the default name) is the bystander
ADVICE = "the sweep continues it when its command is run again: "


# --- a sweep's trial ----------------------------------------------------------------------------


def folder_state(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path → sha256 of its bytes)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def trial_states(database: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial in an SQLite study file, read-only (nothing is created)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        return sorted(db.execute("SELECT number, state FROM trials").fetchall())


def interrupt_after_first_checkpoint(
    args: list[str], cwd: Path, env: dict[str, str], checkpoint: Path
) -> str:
    """Run a sweep, SIGINT its process group (Ctrl-C in a terminal) once `checkpoint` exists; its stderr."""
    with train_cli_running(
        args,
        cwd,
        {**env, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
        stdout=subprocess.DEVNULL,
    ) as sweep:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file():  # Lightning writes it atomically: once there, it is whole
            assert sweep.poll() is None, (
                f"the sweep ended before it could be interrupted: {sweep.communicate()[1][-3000:]}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        os.killpg(sweep.pid, signal.SIGINT)
        try:
            _, err = sweep.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # Where it hangs: faulthandler prints each thread's stack on SIGABRT.
            os.kill(sweep.pid, signal.SIGABRT)
            _, err = sweep.communicate(timeout=30)
            raise AssertionError(f"the sweep did not end within 120 s of Ctrl-C:\n{err[-6000:]}")
    assert sweep.returncode != 0, err[-3000:]
    return err


def the_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.slow
def test_resume_of_an_interrupted_trial_is_refused_and_its_advice_continues_it(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    # Study B, the default study name the incident's replay swept into, already in this folder.
    bystander = sweep_args(
        names_path, tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.workers=1", steps=40
    )
    assert train_cli(bystander, tmp_path, run_env).returncode == 0
    assert [state for _, state in trial_states(tmp_path / "studies" / f"{STUDY}.db")] == [
        "COMPLETE"
    ]

    # Study A, interrupted with Ctrl-C while trial 0 trains (one worker, in the sweep's process).
    trial_dir = tmp_path / "multirun" / STUDY_A / "trial_0"
    args = sweep_args(
        names_path,
        tmp_path,
        f"hydra.sweeper.study_name={STUDY_A}",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.workers=1",
        "hydra.sweeper.pruner=none",
        steps=300,
    )
    sweep_err = interrupt_after_first_checkpoint(
        args, tmp_path, run_env, trial_dir / LAST_CHECKPOINT
    )

    # The trial's own message names its study and the sweep command, never resume=.
    interrupted = read_metrics(trial_dir)
    assert interrupted["state"] == "interrupted"
    assert f"trial 0 of Optuna study {STUDY_A}" in interrupted["error"]
    assert f"hydra.sweeper.study_name={STUDY_A}" in interrupted["error"]
    assert "resume=" not in interrupted["error"] and "resume=" not in sweep_err
    assert f"error: {interrupted['error']}" in sweep_err.splitlines()

    before = folder_state(tmp_path)
    trials_before = {
        name: trial_states(tmp_path / "studies" / f"{name}.db") for name in (STUDY, STUDY_A)
    }
    refused = train_cli([f"resume={trial_dir.relative_to(tmp_path)}"], tmp_path, run_env)
    assert refused.returncode == 2
    line = the_error_line(refused)
    assert line.startswith(
        f"error: resume={trial_dir}: this folder is trial 0 of Optuna study {STUDY_A}; {ADVICE}"
    )
    command = shlex.split(line.split(ADVICE, 1)[1])
    assert command[0] == "makemore-train" and "sweep=beat_2p2" in command
    assert f"hydra.sweeper.study_name={STUDY_A}" in command and "hydra.mode=MULTIRUN" not in command
    assert not any(
        arg.startswith(("+optuna_trial", "model.n_hidden=", "threads=", "ckpt_path="))
        for arg in command
    )

    # From another folder, the advice goes back to the sweep's own (its paths are relative to it).
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    from_elsewhere = train_cli([f"resume={trial_dir}"], elsewhere, run_env)
    assert from_elsewhere.returncode == 2
    assert f"{ADVICE}cd {shlex.quote(str(tmp_path))} && makemore-train " in the_error_line(
        from_elsewhere
    )
    assert list(elsewhere.iterdir()) == []

    # Nothing was composed or written: both studies and all trial folders are byte for byte as they were.
    assert folder_state(tmp_path) == before
    assert {
        name: trial_states(tmp_path / "studies" / f"{name}.db") for name in (STUDY, STUDY_A)
    } == trials_before

    # The advice is right: its command continues trial 0 of study A from its checkpoint.
    continued = train_cli(command[1:], tmp_path, run_env)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "[trial 0] CONTINUED" in continued.stdout
    metrics = read_metrics(trial_dir)
    assert (
        metrics["state"] == "completed"
        and metrics["steps"] == 300
        and metrics["resumed_from_step"] > 0
    )
    assert trial_states(tmp_path / "studies" / f"{STUDY_A}.db") == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
    ]
    assert trial_states(tmp_path / "studies" / f"{STUDY}.db") == trials_before[STUDY]
    assert sorted(p.name for p in (tmp_path / "studies").glob("*.db")) == sorted(
        f"{n}.db" for n in (STUDY, STUDY_A)
    )


def trial_folder(
    root: Path, overrides: list[str], hydra_overrides: list[str], params: dict[str, str]
) -> Path:
    """A trial folder as the sweeper and Hydra write it (.hydra/config.yaml, overrides.yaml, hydra.yaml)."""
    trial_dir = root / "multirun" / "s" / "trial_3"
    (trial_dir / ".hydra").mkdir(parents=True)
    identity = {"number": 3, "study_name": "s", "base_dir": str(root)}
    OmegaConf.save(
        OmegaConf.create({"seed": 1, TRIAL_CONFIG_KEY: identity}),
        trial_dir / ".hydra" / "config.yaml",
    )
    OmegaConf.save(OmegaConf.create(overrides), trial_dir / ".hydra" / "overrides.yaml")
    hydra = {
        "sweeper": {"params": params},
        "overrides": {"hydra": hydra_overrides, "task": overrides},
    }
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), trial_dir / ".hydra" / "hydra.yaml")
    return trial_dir


def command_in(message: str) -> list[str]:
    return shlex.split(message[message.index("makemore-train ") :])


def refusal(trial_dir: Path) -> str:
    with pytest.raises(ConfigError) as refused:
        expand_resume_argument([f"resume={trial_dir}"])
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_a_trial_is_refused_with_the_command_of_its_sweep_as_the_sweep_folder_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    trial = [
        "model.n_hidden=120",
        "optim.lr=0.02",
        "sweep=beat_2p2",
        "+notes.who=a b",
        "+optuna_trial.number=3",
        "+optuna_trial.study_name='s'",
        f"+optuna_trial.base_dir='{tmp_path}'",
        "threads=1",
        "ckpt_path=last",
    ]
    storage = f"hydra.sweeper.storage=postgresql://optuna:{MASK}@db.example/optuna"
    trial_dir = trial_folder(
        tmp_path,
        trial,
        [storage, "hydra.mode=MULTIRUN"],
        {"model.n_hidden": "int(interval(100, 500))"},
    )

    # From the trial's own record: its sampled parameters and the sweeper's additions left out.
    message = refusal(trial_dir)
    assert message.startswith(f"resume={trial_dir}: this folder is trial 3 of Optuna study s; ")
    assert f"give the secret of hydra.sweeper.storage again where it shows {MASK}" in message
    assert command_in(message) == [
        "makemore-train",
        "optim.lr=0.02",
        "sweep=beat_2p2",
        "+notes.who=a b",
        storage,
        "hydra.sweeper.study_name=s",
    ]

    # Hydra's multirun.yaml in the sweep folder holds the sweep's own arguments, search ranges included.
    task = ["sweep=beat_2p2", "optim.lr=interval(0.01, 0.1)"]
    record = {
        "hydra": {
            "overrides": {
                "hydra": ["hydra.sweeper.study_name=s", "hydra.mode=MULTIRUN"],
                "task": task,
            }
        }
    }
    OmegaConf.save(OmegaConf.create(record), trial_dir.parent / "multirun.yaml")
    assert command_in(refusal(trial_dir)) == ["makemore-train", *task, "hydra.sweeper.study_name=s"]


def test_a_trial_whose_sweep_command_cannot_be_read_is_still_refused(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trial_7"
    (trial_dir / ".hydra").mkdir(parents=True)
    overrides = [
        "optim.lr=0.02",
        "+optuna_trial.number=7",
        "+optuna_trial.study_name='mine'",
        "+optuna_trial.base_dir='/w'",
    ]
    OmegaConf.save(OmegaConf.create(overrides), trial_dir / ".hydra" / "overrides.yaml")
    message = refusal(trial_dir)
    assert message.startswith(f"resume={trial_dir}: this folder is trial 7 of Optuna study mine; ")
    assert message.endswith(
        "run the sweep's command again in /w with hydra.sweeper.study_name=mine"
    )


def test_a_secret_saved_as_a_bare_mask_still_reads(tmp_path: Path) -> None:
    """Redaction writes `api_token: ***`, which YAML takes for an alias: such run folders exist."""
    saved = tmp_path / "config.yaml"
    saved.write_text(
        f"notes:\n  api_token: {MASK}\n  url: postgresql://u:{MASK}@h/db\nlist:\n- {MASK}\n"
    )
    assert OmegaConf.to_container(load_saved_yaml(saved)) == {
        "notes": {"api_token": MASK, "url": f"postgresql://u:{MASK}@h/db"},
        "list": [MASK],
    }


# --- a finished run -----------------------------------------------------------------------------

TINY_RUN = [
    "trainer.max_steps=100",
    "trainer.val_every_n_steps=50",
    "model.n_hidden=32",
    "data.batch_size=32",
    "logger=csv",
]


@pytest.fixture(scope="module")
def finished_run_dir(names_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import user_shell_env

    root = tmp_path_factory.mktemp("finished")
    run_dir = root / "run"
    result = train_cli(
        [f"data.path={names_path}", *TINY_RUN, f"hydra.run.dir={run_dir}"], root, user_shell_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metrics(run_dir)["state"] == "completed"
    return run_dir


def stamps(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """(mtime, bytes) of every file of a run folder."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_resume_of_a_finished_run_says_so_and_trains_nothing(
    finished_run_dir: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    before = stamps(finished_run_dir)
    result = train_cli([f"resume={finished_run_dir}", "logger=none"], tmp_path, run_env)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = read_metrics(finished_run_dir)
    line = (
        f"{finished_run_dir}: the run is finished (best dev loss {metrics['val_loss']:.4f} in 100 steps); nothing to "
        "resume (to train it longer, add trainer.max_steps=N with N above 100 next to resume=)."
    )
    assert result.stdout.splitlines() == [line]
    assert "error:" not in result.stderr and "Traceback" not in result.stderr
    assert stamps(finished_run_dir) == before  # metrics.json, checkpoints, .hydra, logs: untouched
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_only_a_larger_step_budget_continues_a_finished_run(
    finished_run_dir: Path, tmp_path: Path
) -> None:
    for given in ([], ["trainer.max_steps=100"], ["trainer.max_steps=60", "logger=none"]):
        with pytest.raises(RunFinished):
            expand_resume_argument([f"resume={finished_run_dir}", *given])
    for given in (["trainer.max_steps=200"], ["trainer.max_epochs=1"]):
        argv = expand_resume_argument([f"resume={finished_run_dir}", *given])
        assert "ckpt_path=last" in argv and given[0] in argv


@pytest.mark.slow
def test_an_interrupted_run_is_continued_not_answered(
    finished_run_dir: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    copy = tmp_path / "run"
    subprocess.run(["cp", "-a", str(finished_run_dir), str(copy)], check=True)
    metrics = read_metrics(copy)
    (copy / "metrics.json").write_text(json.dumps({**metrics, "state": "interrupted"}))
    assert "ckpt_path=last" in expand_resume_argument([f"resume={copy}"])
    # It reaches training's own checks: a budget below the steps done is refused there.
    shorter = train_cli([f"resume={copy}", "trainer.max_steps=60"], tmp_path, run_env)
    assert "already done 100 steps" in the_error_line(shorter) and shorter.returncode == 2


@pytest.mark.slow
def test_the_notebook_api_returns_a_finished_runs_metrics_without_training(
    finished_run_dir: Path,
) -> None:
    from makemore_sweep import train

    before = stamps(finished_run_dir)
    assert train([f"resume={finished_run_dir}"]) == read_metrics(finished_run_dir)
    assert stamps(finished_run_dir) == before
    assert (finished_run_dir / BEST_CHECKPOINT).is_file()


@pytest.mark.slow
def test_resume_of_a_finished_bigram_says_it_is_finished(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    """The count bigram has no steps and no last.ckpt: finished, not 'nothing to resume'."""
    run_dir = tmp_path / "bigram"
    first = train_cli(
        [f"data.path={names_path}", "model=bigram", "logger=csv", f"hydra.run.dir={run_dir}"],
        tmp_path,
        run_env,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    before = stamps(run_dir)
    result = train_cli([f"resume={run_dir}"], tmp_path, run_env)
    assert result.returncode == 0, result.stdout + result.stderr
    dev = read_metrics(run_dir)["val_loss"]
    assert result.stdout.splitlines() == [
        f"{run_dir}: the run is finished (a counted network, dev loss {dev:.4f}); nothing to resume."
    ]
    assert stamps(run_dir) == before
