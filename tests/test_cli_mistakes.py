"""Mistakes on makemore-train's command line: one `error:` sentence on stderr, exit code 2.

Each case runs the real CLI in a fresh folder, as a user would: a misspelt group option (the
sweep, model, experiment... and Hydra's own groups), a key the chosen sweeper or launcher does
not have, a bad value of one, bad override syntax, a sweep Hydra cannot run. Hydra's options and
schemas decide; nothing stands in for Hydra. All are caught before any data is read or any run
folder is made, so no names.txt is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import train_cli

from makemore_sweep.api.composition import compose_config
from makemore_sweep.errors import ConfigError

# An experiment a sweep exported (./configs/experiment/<study>_best.yaml): Hydra finds it
# through the project's search-path plugin, so it is among the choices of `experiment=`.
EXPORTED = "# @package _global_\nmodel:\n  n_hidden: 300\n"

# (command line, culprit the sentence names, what else it must say)
MISTAKES: list[tuple[list[str], str, str]] = [
    (["sweep=beat2p2"], "sweep=beat2p2 is not a sweep", "did you mean beat_2p2?"),
    (["model=mlpbn"], "model=mlpbn is not a model", "did you mean mlp_bn?"),
    (["experiment=beat_2p2_bst"], "experiment=beat_2p2_bst", "did you mean beat_2p2_best?"),
    (["logger=wandbb"], "logger=wandbb", "did you mean wandb?"),
    (["optim=adamm"], "optim=adamm", "did you mean adamw?"),
    (["task=trian"], "task=trian", "did you mean train? (choices: lr_find, train)"),
    (["hydra/launcher=slrum"], "hydra/launcher=slrum is not a launcher", "did you mean slurm?"),
    (["+sweep=beat2p2"], "+sweep=beat2p2", "did you mean beat_2p2?"),
    (["++model=mlpbn"], "++model=mlpbn", "did you mean mlp_bn?"),
    (
        ["model=xyz"],
        "model=xyz is not a model",
        "(choices: bigram, mlp, mlp_bn, transformer, wavenet)",
    ),
    (["-m", "model=mlp,mlpbn"], "model=mlpbn", "did you mean mlp_bn?"),  # a grid's second value
    (["+model=mlp"], "+model=mlp", "drop the +"),
    (
        ["hydra.sweeper.n_trails=1", "sweep=beat_2p2"],
        "hydra.sweeper.n_trails is not a key of hydra.sweeper",
        "did you mean hydra.sweeper.n_trials?",
    ),
    (["hydra.sweeper.n_trials=4"], "hydra.sweeper.n_trials", "the basic sweeper"),  # no sweep=
    (
        ["hydra.launcher.timeout_mins=5", "hydra/launcher=local"],
        "hydra.launcher.timeout_mins",
        "did you mean hydra.launcher.timeout_min?",
    ),
    (["hydra.launcher.n_job=2", "hydra/launcher=local"], "hydra.launcher.n_job", "timeout_min"),
    (
        ["hydra.launcher.partiton=gpu", "hydra/launcher=slurm"],
        "hydra.launcher.partiton",
        "did you mean hydra.launcher.partition?",
    ),
    (["hydra.launcher.n_jobs=2"], "hydra.launcher.n_jobs", "hydra/launcher=NAME"),  # basic launcher
    (["hydra.sweeper.n_trials=abc", "sweep=beat_2p2"], "hydra.sweeper.n_trials=abc", "an integer"),
    (["model.n_hidden=[1,"], "model.n_hidden=[1,", "cannot be parsed"),
    (["model.n_hidden=100,200"], "model.n_hidden=100,200", "-m (--multirun)"),
]

IDS = [" ".join(args) for args, _, _ in MISTAKES]


def run_in_user_folder(args: list[str], tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    (tmp_path / "configs" / "experiment").mkdir(parents=True)
    (tmp_path / "configs" / "experiment" / "beat_2p2_best.yaml").write_text(EXPORTED)
    result = train_cli(args, cwd=tmp_path, env=env, timeout=120)
    return result.returncode, result.stderr


@pytest.mark.parametrize(("args", "culprit", "says"), MISTAKES, ids=IDS)
def test_a_mistake_is_one_sentence_and_exit_code_2(
    args: list[str], culprit: str, says: str, tmp_path: Path, run_env: dict[str, str]
) -> None:
    returncode, stderr = run_in_user_folder(args, tmp_path, run_env)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert culprit in lines[0] and says in lines[0], lines[0]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_without_a_close_match_only_the_choices_are_listed(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    returncode, stderr = run_in_user_folder(["optim=nosuch"], tmp_path, run_env)
    assert returncode == 2
    assert stderr.strip() == "error: optim=nosuch is not an optimiser (choices: adamw, sgd)"


def test_makemore_debug_shows_hydras_own_error(tmp_path: Path, run_env: dict[str, str]) -> None:
    debug = {**run_env, "MAKEMORE_DEBUG": "1"}
    returncode, stderr = run_in_user_folder(["sweep=beat2p2"], tmp_path, debug)
    assert returncode != 0
    assert len(stderr.strip().splitlines()) > 1
    # Hydra's exception is the cause of ours, and the traceback shows both.
    assert "Could not find 'sweep/beat2p2'" in stderr and "is not a sweep" in stderr, stderr


def test_the_notebook_api_raises_the_same_sentence() -> None:
    with pytest.raises(ConfigError, match=r"^sweep=beat2p2 is not a sweep; did you mean beat_2p2"):
        compose_config(["sweep=beat2p2"])
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.n_trails is not a key of hydra.sweeper"):
        compose_config(["sweep=beat_2p2", "hydra.sweeper.n_trails=1"])
