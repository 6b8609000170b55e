"""check_storage_url against real SQLite files and a PostgreSQL address where nothing listens."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from makemore_sweep.errors import StorageError
from makemore_sweep.storage import check_storage_url

PASSWORD = "Sentinel-Db-Pw"


def test_a_usable_sqlite_file_is_opened_and_holds_optuna_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    check_storage_url(url)
    assert (tmp_path / "study.db").is_file()
    optuna.create_study(storage=url, study_name="after-the-check")  # the file is a real Optuna storage


def test_sqlite_in_a_missing_folder_names_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'study.db'}"
    with pytest.raises(StorageError) as caught:
        check_storage_url(url)
    message = str(caught.value)
    assert url in message and "unable to open database file" in message
    assert "\n" not in message
    assert not (tmp_path / "no").exists()


def test_sqlite_under_a_read_only_system_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="/proc/nosuch/study.db"):
        check_storage_url("sqlite:////proc/nosuch/study.db")


def test_unreachable_postgresql_names_the_url_without_its_password() -> None:
    """psycopg2-binary is a dev dependency; port 1 refuses at once, so no timeout is involved."""
    url = f"postgresql+psycopg2://optuna:{PASSWORD}@127.0.0.1:1/x"
    with pytest.raises(StorageError) as caught:
        check_storage_url(url)
    message = str(caught.value)
    assert "postgresql+psycopg2://optuna:***@127.0.0.1:1/x" in message
    assert "Connection refused" in message or "connect" in message
    assert PASSWORD not in message and "\n" not in message


def test_plain_postgresql_url_fails_in_one_masked_sentence_whatever_driver_is_installed() -> None:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg (3): missing driver or refused connection."""
    url = f"postgresql://optuna:{PASSWORD}@127.0.0.1:1/x"
    with pytest.raises(StorageError) as caught:
        check_storage_url(url)
    message = str(caught.value)
    assert "postgresql://optuna:***@127.0.0.1:1/x" in message
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgres://u:pw@127.0.0.1:1/x", "write postgresql://"),
        ("not a url", "not a database URL"),
        ("nosuchdb://u:pw@host/x", "database driver"),
    ],
)
def test_malformed_urls(url: str, words: str) -> None:
    with pytest.raises(StorageError, match=words) as caught:
        check_storage_url(url)
    assert ":pw@" not in str(caught.value)
