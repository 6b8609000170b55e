"""Optuna storage from a URL: SQLite, a journal file, PostgreSQL errors; passwords never shown."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import train_cli
from optuna.storages import JournalStorage, RDBStorage
from wandb_offline import run_config

from makemore_sweep.errors import StorageError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.storage import journal_path, open_storage

SECRET = "s3cr3t-pass"


def _add_finished_trial(storage: object, name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    trial = study.ask()
    study.tell(trial, 1.5)
    return study


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("journal:studies/beat.log", Path("studies/beat.log")),
        ("journal://studies/beat.log", Path("studies/beat.log")),
        ("journal:///shared/studies/beat.log", Path("/shared/studies/beat.log")),
        ("journal:/shared/beat.log", Path("/shared/beat.log")),
    ],
)
def test_journal_urls_name_a_relative_or_absolute_file(url: str, path: Path) -> None:
    assert journal_path(url) == path


def test_sqlite_storage_keeps_the_study_and_never_creates_a_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/studies/beat.db"
    with pytest.raises(
        StorageError, match=f"The folder {tmp_path}/studies of the storage {url} does not exist"
    ):
        open_storage(url)
    assert not (tmp_path / "studies").exists()  # a mistyped path must not become a new, empty study
    (tmp_path / "studies").mkdir()
    storage = open_storage(url)
    assert isinstance(storage, RDBStorage)
    _add_finished_trial(storage, "beat")
    reloaded = optuna.load_study(study_name="beat", storage=open_storage(url))
    assert [t.value for t in reloaded.trials] == [1.5]


def test_a_journal_file_is_shared_by_every_storage_opened_on_it(tmp_path: Path) -> None:
    url = f"journal:{tmp_path}/shared/beat.log"
    (tmp_path / "shared").mkdir()
    first, second = open_storage(url), open_storage(url)
    assert isinstance(first, JournalStorage)
    _add_finished_trial(first, "beat")
    _add_finished_trial(second, "beat")
    assert len(optuna.load_study(study_name="beat", storage=open_storage(url)).trials) == 2
    assert (tmp_path / "shared" / "beat.log").stat().st_size > 0


def test_no_url_means_in_memory() -> None:
    assert open_storage(None) is None


def test_an_unreachable_database_is_one_sentence_without_the_password() -> None:
    # Port 1 on this machine: nothing listens, so the connection is refused at once.
    url = f"postgresql+psycopg2://makemore:{SECRET}@127.0.0.1:1/optuna"
    with pytest.raises(StorageError) as raised:
        open_storage(url)
    message = str(raised.value)
    assert SECRET not in message
    assert "postgresql+psycopg2://makemore:***@127.0.0.1:1/optuna" in message
    assert "\n" not in message


def test_a_storage_url_is_shown_with_its_password_masked() -> None:
    # What the sweep's plan line and every storage error show of a server URL.
    shown = mask_secrets(f"postgresql://user:{SECRET}@db.cluster:5432/optuna")
    assert shown == "postgresql://user:***@db.cluster:5432/optuna"


@pytest.mark.slow
def test_a_password_on_the_command_line_never_reaches_the_output_or_w_and_b(
    names_path: Path, run_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"postgresql+psycopg2://makemore:{SECRET}@db.example:5432/optuna"
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            f"data.path={names_path}",
            "trainer.max_steps=50",
            "trainer.val_every_n_steps=50",
            f"+notes.storage={url}",  # stands for any override carrying a storage URL
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    assert run_config(run_file)["notes.storage"] == mask_secrets(url)
    # W&B keeps the command line in the run's metadata: it must be masked there too.
    for written in (run_dir / "wandb").rglob("*"):
        if written.is_file():
            assert SECRET.encode() not in written.read_bytes(), written


PASSWORD = "Sentinel-Db-Pw"


def test_a_usable_sqlite_file_is_opened_and_holds_optuna_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_storage(url)
    assert (tmp_path / "study.db").is_file()
    optuna.create_study(
        storage=url, study_name="after-the-check"
    )  # the file is a real Optuna storage


def test_sqlite_in_a_folder_that_cannot_be_made_names_the_url(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the studies folder should be")
    url = f"sqlite:///{blocker / 'study.db'}"
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert url in message
    assert "\n" not in message


def test_sqlite_under_a_read_only_system_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="/proc/nosuch/study.db"):
        open_storage("sqlite:////proc/nosuch/study.db")


def test_unreachable_postgresql_names_the_url_without_its_password() -> None:
    """psycopg2-binary is a dev dependency; port 1 refuses at once, so no timeout is involved."""
    url = f"postgresql+psycopg2://optuna:{PASSWORD}@127.0.0.1:1/x"
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert "postgresql+psycopg2://optuna:***@127.0.0.1:1/x" in message
    assert "Connection refused" in message or "connect" in message
    assert PASSWORD not in message and "\n" not in message


def test_plain_postgresql_url_fails_in_one_masked_sentence_whatever_driver_is_installed() -> None:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg (3): missing driver or refused connection."""
    url = f"postgresql://optuna:{PASSWORD}@127.0.0.1:1/x"
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert "postgresql://optuna:***@127.0.0.1:1/x" in message
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgres://u:pw@127.0.0.1:1/x", "write postgresql://"),
        ("not a url", "not a database URL"),
        (
            "nosuchdb://u:pw@host/x",
            "unknown scheme nosuchdb",
        ),  # a typo, not a missing driver (issue 18)
    ],
)
def test_malformed_urls(url: str, words: str) -> None:
    with pytest.raises(StorageError, match=words) as caught:
        open_storage(url)
    assert ":pw@" not in str(caught.value)
