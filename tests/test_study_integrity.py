"""A study owns its records: another study, a changed budget or a mistyped storage never touch them.

Each scenario runs the real CLI on a real SQLite study, then checks that what the first study
left (its database, trial folders and exported experiment) is byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import optuna
import pytest
from cli_checks import assert_clean_failure
from conftest import train_cli, user_shell_env
from sweep_helpers import STUDY, load_study, sweep_args

from makemore_sweep.errors import ConfigError
from makemore_sweep.sweeper.driver import (
    OWNER_FILE,
    SETTINGS_ATTR,
    claim_sweep_folder,
    hydra_syntax,
)
from makemore_sweep.sweeper.results import check_exports
from makemore_sweep.sweeper.study import build_search_space

ONE_WORKER = ["hydra.sweeper.workers=1", "hydra.sweeper.n_trials=2"]


def snapshot(workdir: Path) -> dict[str, str]:
    """The sha256 of every file of the first study: its database, trial folders and export."""
    files = [
        workdir / "studies" / f"{STUDY}.db",
        *sorted((workdir / "multirun" / STUDY).rglob("*")),
        *sorted((workdir / "conf" / "experiment").glob("*.yaml")),
    ]
    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built_study(tmp_path_factory: pytest.TempPathFactory, names_path: Path) -> Path:
    """A finished 2-trial study `beat_2p2`, run once for the module by the real CLI."""
    workdir = tmp_path_factory.mktemp("first-study")
    # Exported under the copy's own folder too: sweep_args points the export at WORKDIR/conf.
    result = train_cli(
        sweep_args(names_path, workdir, *ONE_WORKER), cwd=workdir, env=user_shell_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "conf" / "experiment" / f"{STUDY}_best.yaml").is_file()
    # No lock file is left behind beside the study (the workers lock its folder instead).
    assert not list(workdir.rglob("*.asklock")), list(workdir.rglob("*.asklock"))
    return workdir


@pytest.fixture
def first_study(tmp_path: Path, built_study: Path) -> dict[str, str]:
    """That study copied into tmp_path (its records name their files relative to the folder it
    ran in), as its files are before the test."""
    shutil.copytree(built_study, tmp_path, dirs_exist_ok=True)
    return snapshot(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal:other/beat.log", "sqlite:///other/beat.db"])
def test_the_same_study_name_on_another_storage_is_refused(
    tmp_path: Path,
    names_path: Path,
    run_env: dict[str, str],
    first_study: dict[str, str],
    storage: str,
) -> None:
    (tmp_path / "other").mkdir()
    args = sweep_args(names_path, tmp_path, *ONE_WORKER, f"hydra.sweeper.storage={storage}")
    result = train_cli(args, cwd=tmp_path, env=run_env)
    line = assert_clean_failure(result, "hydra.sweeper.study_name")
    assert result.returncode == 2 and result.stderr.strip() == line
    assert f"'{STUDY}' in sqlite:///studies/{STUDY}.db" in line and storage in line
    assert snapshot(tmp_path) == first_study
    assert not list((tmp_path / "other").iterdir())  # the second storage was never even created


@pytest.mark.slow
def test_an_export_of_another_study_is_refused(
    tmp_path: Path, names_path: Path, run_env: dict[str, str], first_study: dict[str, str]
) -> None:
    # Its own sweep folder, but the same experiment name (beat_2p2_best) in the same export folder.
    (tmp_path / "other").mkdir()
    extra = ["hydra.sweeper.storage=sqlite:///other/beat.db", "hydra.sweep.dir=multirun/elsewhere"]
    result = train_cli(
        sweep_args(names_path, tmp_path, *ONE_WORKER, *extra), cwd=tmp_path, env=run_env
    )
    line = assert_clean_failure(
        result, f"{STUDY}_best.yaml was exported by study '{STUDY}' in sqlite:///studies/"
    )
    assert "hydra.sweeper.study_name" in line and result.returncode == 2
    assert snapshot(tmp_path) == first_study


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        (
            "trainer.max_steps=80",
            "trainer.max_steps=80 does not fit study 'beat_2p2', whose trials were run with trainer.max_steps=60",
        ),
        ("trainer.val_every_n_steps=30", "trainer.val_every_n_steps=30"),
        ("hydra.sweeper.pruner=median", "hydra.sweeper.pruner=median"),
        (
            "model.n_embd=int(interval(8,64))",
            "hydra.sweeper.params.model.n_embd=int(interval(8, 64))",
        ),
    ],
)
def test_a_changed_setting_of_a_study_is_refused(
    tmp_path: Path,
    names_path: Path,
    run_env: dict[str, str],
    first_study: dict[str, str],
    change: str,
    culprit: str,
) -> None:
    args = sweep_args(
        names_path, tmp_path, "hydra.sweeper.workers=1", "hydra.sweeper.n_trials=4", change
    )
    result = train_cli(args, cwd=tmp_path, env=run_env)
    line = assert_clean_failure(result, culprit)
    assert result.returncode == 2 and result.stderr.strip() == line
    assert "hydra.sweeper.study_name=" in line
    assert len(load_study(tmp_path).trials) == 2
    assert snapshot(tmp_path) == first_study


@pytest.mark.slow
def test_fewer_trials_than_the_study_holds_runs_nothing_and_says_so(
    tmp_path: Path, names_path: Path, run_env: dict[str, str], first_study: dict[str, str]
) -> None:
    result = train_cli(
        sweep_args(names_path, tmp_path, "hydra.sweeper.n_trials=1"), cwd=tmp_path, env=run_env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 finished, n_trials=1: nothing to run" in result.stdout
    assert len(load_study(tmp_path).trials) == 2
    assert "[sweep] best trial" in result.stdout
    more = train_cli(
        sweep_args(names_path, tmp_path, *ONE_WORKER[:1], "hydra.sweeper.n_trials=3"),
        cwd=tmp_path,
        env=run_env,
    )
    assert more.returncode == 0, more.stderr[-3000:]
    assert "n_trials=3, resuming: 2 finished; 1 to run" in more.stdout
    assert len(load_study(tmp_path).trials) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "culprit"),
    [
        ("sqllite:///x.db", "unknown scheme sqllite; did you mean sqlite:///x.db?"),
        ("postgressql://u@localhost/db", "did you mean postgresql://u@localhost/db?"),
        (
            "sqlite:////nonexistent/x.db",
            "The folder /nonexistent of the storage sqlite:////nonexistent/x.db does not exist",
        ),
        (
            "journal:/nonexistent/x.log",
            "The folder /nonexistent of the storage journal:/nonexistent/x.log does not exist",
        ),
        ("sqlite:///no_such_folder/x.db", "no_such_folder of the storage"),
    ],
)
def test_storage_url_mistakes_get_one_sentence_before_anything_starts(
    tmp_path: Path, names_path: Path, run_env: dict[str, str], storage: str, culprit: str
) -> None:
    result = train_cli(
        sweep_args(names_path, tmp_path, f"hydra.sweeper.storage={storage}"),
        cwd=tmp_path,
        env=run_env,
    )
    line = assert_clean_failure(result, culprit)
    assert result.returncode == 2 and result.stderr.strip() == line
    assert not Path("/nonexistent").exists()
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == []
    )  # nothing written: no folder, no study, no trial


@pytest.mark.slow
def test_the_default_studies_folder_is_created(
    tmp_path: Path, names_path: Path, run_env: dict[str, str]
) -> None:
    args = sweep_args(names_path, tmp_path, "hydra.sweeper.workers=1", "hydra.sweeper.n_trials=1")
    result = train_cli(
        [*args, "hydra.sweeper.storage=sqlite:///studies/mine.db"], cwd=tmp_path, env=run_env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "studies" / "mine.db").is_file()


# --- the parts, without training ---------------------------------------------------------------


def test_a_study_records_its_settings_once(tmp_path: Path) -> None:
    from makemore_sweep.sweeper.driver import keep_study_settings

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    wanted = {"trainer.max_steps": 500, "hydra.sweeper.params": {}}
    keep_study_settings(study, wanted)
    keep_study_settings(study, dict(wanted))  # the same settings again: accepted
    assert study.user_attrs[SETTINGS_ATTR] == wanted
    with pytest.raises(ConfigError, match="trainer.max_steps=300 does not fit study 's'"):
        keep_study_settings(study, {**wanted, "trainer.max_steps": 300})
    # A setting the study predates is recorded nowhere and accepted.
    keep_study_settings(study, {**wanted, "trainer.val_every_n_steps": 100})


def test_a_legacy_sweep_folder_is_kept_from_a_new_study(tmp_path: Path) -> None:
    (tmp_path / "trial_0").mkdir()
    with pytest.raises(ConfigError, match="holds trial folders of another study"):
        claim_sweep_folder(tmp_path, "'s' in sqlite:///x.db", study_has_trials=False)
    assert not (tmp_path / OWNER_FILE).exists()
    claim_sweep_folder(
        tmp_path, "'s' in sqlite:///x.db", study_has_trials=True
    )  # the study that wrote them
    with pytest.raises(ConfigError, match="holds the trials of study 's' in sqlite:///x.db"):
        claim_sweep_folder(tmp_path, "'s' in journal:y.log", study_has_trials=True)


def test_an_export_without_owner_line_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "s_best.yaml").write_text(
        "# @package _global_\n# Best trial 3 of Optuna study s\nx: 1\n"
    )
    check_exports(
        tmp_path, ["s_best"], "'s' in sqlite:///x.db"
    )  # written before exports named their study


@pytest.mark.parametrize(
    "sweep",
    [
        "int(interval(8, 32))",
        "tag(log, interval(0.001, 0.03))",
        "interval(0.0, 0.3)",
        "choice(128, 256)",
        "range(64, 1025, step=64)",
    ],
)
def test_a_search_dimension_is_shown_as_it_is_written(sweep: str) -> None:
    space = build_search_space({"x": sweep}, [])
    shown = hydra_syntax(space.distributions["x"])
    assert build_search_space({"x": shown}, []).distributions["x"] == space.distributions["x"]
