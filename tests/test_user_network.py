"""A network the user writes in their own folder (issue 26), run as the user runs it.

The folder holds `my_nets.py` (a residual network with BatchNorm: not an MLP of ours) and
`configs/model/resnet.yaml`; makemore-train runs there, with no PYTHONPATH. It trains, its
metrics.json gives its true parameter count, its checkpoint rebuilds it (makemore-sample), and
each mistake a user can make with it (a misspelt key, a wrong type, a missing key, a class that
cannot be imported or is not a Module, a forward of the wrong shape) is one sentence, exit 2.
Then it goes through everything a shipped network does: a packed 2-worker sweep whose exported
best reproduces its trial and whose report shows it; a killed run resumed exactly (`resume=`); a
packed worker killed with SIGKILL, whose members continue from their checkpoints; `task=lr_find`
and the notebook API. tests/test_wheel.py trains and samples it with the package installed
from its wheel, and tests/test_slurm.py runs it as a SLURM job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import train_cli, train_cli_running
from optuna.trial import TrialState
from run_watch import start_training, wait_for_checkpoint_step
from sweep_helpers import STUDY, load_study
from sweep_watch import running_trials, wait_for_running_trial_with_checkpoint
from user_nets import users_network, write_user_folder

from makemore_sweep.config.command_line import check_command_line
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.checkpoint_paths import BEST_CHECKPOINT, LAST_CHECKPOINT
from makemore_sweep.training.metrics_file import read_metrics


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    return write_user_folder(tmp_path)


def console(
    command: list[str], folder: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A console script run as a user runs it, in their folder, with no PYTHONPATH."""
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return subprocess.run(
        command, check=False, cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


BUDGET = ["trainer.max_steps=300", "trainer.val_every_n_steps=100", "logger=csv", "threads=1"]


def test_a_network_in_the_users_folder_trains_and_samples(
    user_folder: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = user_folder / "run"
    args = ["model=resnet", "model.n_blocks=3", f"data.path={names_path}", *BUDGET]
    # The console scripts a user runs (not `python -m`, which would put the folder on sys.path).
    scripts = Path(sys.executable).parent
    result = console(
        [str(scripts / "makemore-train"), *args, f"hydra.run.dir={run_dir}"], user_folder, run_env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["state"] == "completed" and metrics["steps"] == 300
    expected = sum(p.numel() for p in users_network(user_folder, width=24, n_blocks=3).parameters())
    assert metrics["n_params"] == expected  # the YAML's width, the command line's n_blocks
    assert metrics["val_loss"] < metrics["init_loss"] - 0.3  # it learnt
    # The checkpoint keeps what rebuilds it: the class and every key, defaults included.
    hparams = torch.load(run_dir / BEST_CHECKPOINT, weights_only=True)["hyper_parameters"]
    assert hparams["network"] == {
        "_target_": "my_nets.ResidualNet",
        "name": "ResidualNet",  # its label: the YAML has no `name`, so the class names it
        "width": 24,
        "n_blocks": 3,
        "n_embd": 8,
    }
    sampled = console(
        [str(scripts / "makemore-sample"), str(run_dir), "--n", "5"], user_folder, run_env
    )
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout.split()) == 5


# (overrides, the sentence): refused while the command line is checked, before any run starts.
CONFIG_MISTAKES = [
    (["model=resnet", "model.width=wide"], "model.width=wide is invalid: "),
    (["model=needs_width"], "model.width cannot be read (it is missing); give it a value"),
    (["model=resnet", "model._target_=my_nets.ResidualNt"], "my_nets has no ResidualNt; did you mean my_nets.ResidualNet?"),
    (["model=resnet", "model._target_=no_such_file.Net"], "cannot be imported: there is no module no_such_file here"),
    (["model=resnet", "model._target_=my_nets.NOT_A_NETWORK"], "is not a network: it must name a torch.nn.Module class."),
    # A sweep: its process checks the keys by name from the source, without importing torch.
    (["-m", "model=resnet", "model.n_blokcs=1,2"], "model.n_blokcs is not a configuration key; did you mean model.n_blocks?"),
    (["-m", "model=needs_width"], "model.width cannot be read (it is missing); give it a value"),
    (["-m", "model=resnet", "model._target_=no_such_file.Net"], "cannot be imported: there is no module no_such_file here"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    CONFIG_MISTAKES,
    ids=[
        "type",
        "missing",
        "class-typo",
        "no-module",
        "not-a-module",
        "sweep-typo",
        "sweep-missing",
        "sweep-no-module",
    ],
)
def test_a_mistake_in_the_users_network_config_is_one_sentence(
    args: list[str], says: str, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """makemore-train's own check of its command line, in the user's folder (in-process: the
    CLI's one line and exit 2 for any such sentence are tested end to end below)."""
    monkeypatch.chdir(user_folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the user's folder joins it: undo that
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    with pytest.raises(ConfigError) as refused:
        check_command_line(args)
    assert says in str(refused.value) and "\n" not in str(refused.value), refused.value
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)


# (command line, the sentence): end to end, one `error:` line and exit code 2.
CLI_MISTAKES = [
    (["model=resnet", "model.n_blokcs=3"], "model.n_blokcs is not a configuration key; did you mean model.n_blocks?"),
    (
        ["model=resnet", "model._target_=my_nets.EveryPosition", "~model.width"],
        "my_nets.EveryPosition's forward returned (2, 3, 27) for contexts of shape (2, 3): it must return logits of shape (B, vocab_size) = (2, 27).",
    ),
    (
        ["model=wavenet", "data.block_size=6"],
        "WaveNet(n_embd=24, n_hidden=128, dropout=0.0, bn_momentum=0.1) could not be built: ValueError: its context (data.block_size=6) must be a power of two.",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), CLI_MISTAKES, ids=["typo", "shape", "refused"])
def test_a_mistake_with_the_users_network_is_one_line_and_exit_code_2(
    args: list[str], says: str, user_folder: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli([*args, f"data.path={names_path}", *BUDGET], cwd=user_folder, env=run_env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert says in lines[0], lines[0]


SWEEP = textwrap.dedent(
    """
    # @package _global_
    defaults:
      - override /hydra/sweeper: makemore_optuna
      - override /model: resnet
    hydra:
      mode: MULTIRUN
      sweep: {dir: "multirun/${hydra.sweeper.study_name}", subdir: "trial_${optuna_trial.number}"}
      sweeper:
        study_name: resnet_tune
        n_trials: 8
        workers: 2
        pack: 4
        pruner: none
        sampler: {seed: 3, n_startup_trials: 8}
        params:
          optim.lr: tag(log, interval(0.003, 0.03))
          optim.weight_decay: tag(log, interval(0.0001, 0.1))
          model.n_blocks: choice(1, 2)   # not in its YAML: a key of its constructor
    data: {batch_size: 64}
    trainer: {max_steps: 300, val_every_n_steps: 100}
    """
)


@pytest.mark.slow
def test_a_sweep_of_the_users_network_packs_exports_its_best_and_reports(
    user_folder: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    import optuna

    (user_folder / "configs" / "sweep").mkdir()
    (user_folder / "configs" / "sweep" / "resnet_tune.yaml").write_text(SWEEP)
    data = f"data.path={names_path}"
    result = train_cli(["sweep=resnet_tune", data, "logger=csv"], cwd=user_folder, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    storage = f"sqlite:///{user_folder}/studies/resnet_tune.db"
    study = optuna.load_study(study_name="resnet_tune", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 8
    packed_with = []
    for trial in study.trials:
        blocks = trial.params["model.n_blocks"]
        expected = sum(
            p.numel() for p in users_network(user_folder, width=24, n_blocks=blocks).parameters()
        )
        run_dir = user_folder / "multirun" / "resnet_tune" / f"trial_{trial.number}"
        metrics = read_metrics(run_dir)
        assert metrics["state"] == "completed" and metrics["steps"] == 300
        assert metrics["n_params"] == expected and metrics["val_loss"] == trial.value
        assert (run_dir / "csv" / "metrics.csv").is_file() and (run_dir / BEST_CHECKPOINT).is_file()
        packed_with.append(metrics["packed_with"])
        # Packed only with trials alike in every key of the network (its cohort).
        assert all(
            study.trials[n].params["model.n_blocks"] == blocks for n in metrics["packed_with"]
        )
    assert any(packed_with)  # packs formed: the generic stack trained the user's network

    # The exported best reproduces its trial, run alone.
    best_dir = user_folder / "best"
    rerun = train_cli(
        ["experiment=resnet_tune_best", data, "logger=csv", f"hydra.run.dir={best_dir}"],
        cwd=user_folder,
        env=run_env,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_metrics(best_dir)["val_loss"] == pytest.approx(study.best_value, abs=1e-4)

    report_cli = Path(sys.executable).parent / "makemore-report"
    report = console([str(report_cli), "--storage", storage, "--out", "rep"], user_folder, run_env)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (user_folder / "rep" / "report.html").read_text()
    assert "8 trials" in page and f"{study.best_value:.4f}" in page


@pytest.mark.slow
def test_a_killed_run_of_the_users_network_resumes_to_exactly_the_uninterrupted_result(
    user_folder: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    """`resume=` rebuilds the user's network from its checkpoint and ends, on CPU, where the
    run would have ended had it not been killed (its BatchNorm statistics and AdamW moments)."""
    args = ["model=resnet", f"data.path={names_path}", "trainer.max_steps=400", "logger=csv"]
    args += ["trainer.val_every_n_steps=100", "threads=1", "optim=adamw"]
    whole, killed = user_folder / "whole", user_folder / "killed"
    result = train_cli([*args, f"hydra.run.dir={whole}"], cwd=user_folder, env=run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    first = start_training([*args, f"hydra.run.dir={killed}"], user_folder, run_env)
    killed_at = wait_for_checkpoint_step(first, killed / LAST_CHECKPOINT, after_step=0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert killed_at < 400

    resumed = train_cli([f"resume={killed}"], cwd=user_folder, env=run_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got, want = read_metrics(killed), read_metrics(whole)
    assert got["resumed_from_step"] == killed_at and got["steps"] == 400
    assert [s for s, _ in got["val_history"]] == [s for s, _ in want["val_history"]]
    for key in ("val_loss", "test_loss", "train_loss", "n_params"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


@pytest.mark.slow
def test_lr_find_and_the_notebook_api_run_the_users_network(
    user_folder: Path, names_path: Path, run_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = f"data.path={names_path}"
    found = train_cli(
        ["task=lr_find", "task.num_steps=80", "model=resnet", data, "hydra.run.dir=lr"],
        cwd=user_folder,
        env=run_env,
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert "suggested rate: optim.lr=" in found.stdout
    assert (user_folder / "lr" / "lr_find.png").is_file()

    from makemore_sweep import train

    monkeypatch.chdir(user_folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the user's folder joins it: undo that
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    metrics = train(["model=resnet", "model.n_blocks=1", data, *BUDGET], output_dir="api")
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    expected = sum(p.numel() for p in users_network(user_folder, width=24, n_blocks=1).parameters())
    assert metrics["state"] == "completed" and metrics["n_params"] == expected


KILLED_SWEEP = textwrap.dedent(
    f"""
    # @package _global_
    defaults:
      - override /hydra/sweeper: makemore_optuna
      - override /model: resnet
    hydra:
      mode: MULTIRUN
      sweep: {{dir: "multirun/${{hydra.sweeper.study_name}}", subdir: "trial_${{optuna_trial.number}}"}}
      sweeper:
        study_name: {STUDY}
        n_trials: 4
        workers: 2
        pack: 3
        pruner: none
        sampler: {{seed: 5}}
        params:
          optim.lr: tag(log, interval(0.003, 0.03))
    data: {{batch_size: 64}}
    trainer: {{max_steps: 1500, val_every_n_steps: 100}}
    """
)


@pytest.mark.slow
def test_a_killed_packed_worker_continues_the_users_networks_from_their_checkpoints(
    user_folder: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    """The generic stack's members checkpoint as single networks; a worker killed with SIGKILL
    leaves them to the other worker, which continues each from its last.ckpt."""
    (user_folder / "configs" / "sweep").mkdir()
    (user_folder / "configs" / "sweep" / "killed.yaml").write_text(KILLED_SWEEP)
    args = ["sweep=killed", f"data.path={names_path}", "logger=csv"]
    database = user_folder / "studies" / f"{STUDY}.db"

    def owned_by_pid(pid: object) -> set[int]:
        return {n for n, owner in running_trials(database)[1].items() if owner.get("pid") == pid}

    with train_cli_running(args, user_folder, run_env) as sweep:
        # A worker that runs a pack: it holds two trials or more at once.
        number, owner = wait_for_running_trial_with_checkpoint(
            user_folder, sweep, timeout=300, owned_by=lambda o: len(owned_by_pid(o["pid"])) >= 2
        )
        os.kill(int(owner["pid"]), signal.SIGKILL)
        members = owned_by_pid(owner["pid"])  # the dead worker's claims stay in the study
        stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr[-3000:]
    assert number in members and len(members) >= 2

    study = load_study(user_folder)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4  # no FAIL
    runs = {
        t.number: read_metrics(user_folder / "multirun" / STUDY / f"trial_{t.number}")
        for t in study.trials
    }
    assert any(metrics["packed_with"] for metrics in runs.values())  # the stack trained them
    for trial in study.trials:
        assert runs[trial.number]["val_loss"] == trial.value
        assert [s for s, _ in runs[trial.number]["val_history"]] == list(range(100, 1501, 100))
    continued = [t for t in study.trials if t.user_attrs.get("continued")]
    assert members <= {t.number for t in continued}  # every member of the killed pack
    for trial in continued:
        assert f"[trial {trial.number}] CONTINUED" in stdout
        assert runs[trial.number]["state"] == "completed" and runs[trial.number]["steps"] == 1500
    # The trial seen with its checkpoint went on from it (its pack-mates may have been killed
    # before their first validation wrote one: they start again, as a run alone would).
    assert runs[number]["resumed_from_step"] > 0
