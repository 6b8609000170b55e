"""Optuna storage from a URL: SQLite, a journal file, PostgreSQL errors; passwords never shown."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import train_cli
from optuna.storages import JournalStorage, RDBStorage
from wandb_offline import run_config

from makemore_sweep.errors import StorageError
from makemore_sweep.storage import describe_storage, journal_path, open_storage
from makemore_sweep.tracking import mask_secrets

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


def test_sqlite_storage_creates_its_folder_and_keeps_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/studies/beat.db"
    storage = open_storage(url)
    assert isinstance(storage, RDBStorage)
    _add_finished_trial(storage, "beat")
    reloaded = optuna.load_study(study_name="beat", storage=open_storage(url))
    assert [t.value for t in reloaded.trials] == [1.5]


def test_a_journal_file_is_shared_by_every_storage_opened_on_it(tmp_path: Path) -> None:
    url = f"journal:{tmp_path}/shared/beat.log"
    first, second = open_storage(url), open_storage(url)
    assert isinstance(first, JournalStorage)
    _add_finished_trial(first, "beat")
    _add_finished_trial(second, "beat")
    assert len(optuna.load_study(study_name="beat", storage=open_storage(url)).trials) == 2
    assert (tmp_path / "shared" / "beat.log").stat().st_size > 0


def test_no_url_means_in_memory() -> None:
    assert open_storage(None) is None
    assert "in memory" in describe_storage(None)


def test_an_unreachable_database_is_one_sentence_without_the_password() -> None:
    # Port 1 on this machine: nothing listens, so the connection is refused at once.
    url = f"postgresql+psycopg2://makemore:{SECRET}@127.0.0.1:1/optuna"
    with pytest.raises(StorageError) as raised:
        open_storage(url)
    message = str(raised.value)
    assert SECRET not in message
    assert "postgresql+psycopg2://makemore:***@127.0.0.1:1/optuna" in message
    assert "\n" not in message


def test_describing_a_storage_masks_its_password() -> None:
    described = describe_storage(f"postgresql://user:{SECRET}@db.cluster:5432/optuna")
    assert described == "postgresql://user:***@db.cluster:5432/optuna"


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
