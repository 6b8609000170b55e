"""Bad input through the real `makemore-train` command: one sentence, non-zero exit, no traceback.

Each case runs the CLI in a subprocess as a user would. Configuration errors stop before any
data is read or any run folder gets a metrics.json; data errors name the file. The full range
of every key is covered in-process by tests/test_config_checks.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_checks import assert_clean_failure, offline
from conftest import train_cli


def no_metrics_written(cwd: Path) -> bool:
    return not list(cwd.rglob("metrics.json"))


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("model.n_hidden=-5", "model.n_hidden", "≥ 1"),
        ("data.block_size=0", "data.block_size", "≥ 1"),
        ("optim.lr=-1", "optim.lr", "> 0"),
        ("optim.name=nosuch", "optim.name", "sgd, adamw"),
        (
            "model.n_hidden=abc",
            "model.n_hidden",
            "integer",
        ),  # a type error: once a traceback from torch
    ],
)
def test_bad_config_value_names_the_key_and_range(
    override: str, key: str, allowed: str, names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli([f"data.path={names_path}", override], cwd=tmp_path, env=run_env)
    message = assert_clean_failure(result, key)
    assert allowed in message
    assert no_metrics_written(tmp_path)


@pytest.mark.parametrize("override", ["+model.n_hiden=300", "model.n_hiden=300"])
def test_misspelt_key_is_refused_with_a_suggestion(
    override: str, names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    """`+` adds a key OmegaConf would otherwise keep silently (and training would ignore)."""
    result = train_cli([f"data.path={names_path}", override], cwd=tmp_path, env=run_env)
    message = assert_clean_failure(result, "model.n_hiden")
    assert "did you mean model.n_hidden?" in message
    assert no_metrics_written(tmp_path) and not (tmp_path / "outputs").exists()


def test_batch_larger_than_the_training_split_is_refused(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli(
        [f"data.path={names_path}", "data.batch_size=10000000", "logger=none"],
        cwd=tmp_path,
        env=run_env,
    )
    assert "182625 training examples" in assert_clean_failure(result, "data.batch_size")


def test_unknown_config_group_option_is_one_sentence(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli([f"data.path={names_path}", "optim=nosuch"], cwd=tmp_path, env=run_env)
    line = assert_clean_failure(result, "optim=nosuch is not an optimiser (choices: adamw, sgd)")
    assert result.returncode == 2 and result.stderr.strip() == line


def _missing(tmp: Path) -> Path:
    return tmp / "nowhere" / "names.txt"


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.txt"
    path.write_bytes(b"")
    return path


def _blank_lines(tmp: Path) -> Path:
    path = tmp / "blank.txt"
    path.write_text("\n   \n\t\n\n")
    return path


def _random_bytes(tmp: Path) -> Path:
    path = tmp / "random.bin"
    path.write_bytes(os.urandom(4096) + b"\xff")  # \xff is never valid UTF-8
    return path


def _too_few_words(tmp: Path) -> Path:
    path = tmp / "three.txt"
    path.write_text("ann\nbob\ncid\n")
    return path


@pytest.mark.parametrize(
    ("make_file", "words"),
    [
        (_missing, "could not be downloaded"),
        (_empty, "is empty"),
        (_blank_lines, "only blank lines"),
        (_random_bytes, "not UTF-8"),
        (_too_few_words, "too few"),
    ],
    ids=["missing-offline", "empty", "blank-lines", "random-bytes", "too-few-words"],
)
def test_bad_names_file_names_the_file(
    make_file: Callable[[Path], Path], words: str, tmp_path: Path, run_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data-in"
    data_dir.mkdir()
    path = make_file(data_dir)
    result = train_cli([f"data.path={path}", "logger=none"], cwd=tmp_path, env=offline(run_env))
    message = assert_clean_failure(result, str(path))
    assert words in message
    assert no_metrics_written(tmp_path)
    if make_file is _missing:  # a failed download leaves neither a partial file nor new folders
        assert not path.parent.exists()


def test_debug_flag_shows_the_traceback(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = train_cli(
        [f"data.path={names_path}", "model.n_hidden=-5"],
        cwd=tmp_path,
        env={**run_env, "MAKEMORE_DEBUG": "1"},
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_a_sweep_with_a_bad_names_file_is_refused_before_any_trial(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    """The sweep process reads the names file its local workers will read: one sentence and
    exit 2, and no study, worker or trial folder is made."""
    path = _too_few_words(tmp_path)
    result = train_cli(
        ["sweep=beat_2p2", f"data.path={path}", "logger=none"], cwd=tmp_path, env=run_env
    )
    message = assert_clean_failure(result, str(path))
    assert result.returncode == 2 and "too few" in message
    assert not (tmp_path / "studies").exists() and not (tmp_path / "multirun").exists()
