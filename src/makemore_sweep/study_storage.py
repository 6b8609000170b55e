"""Where an Optuna study lives: the storage URL of a sweep, and opening it with a clear error.

`hydra.sweeper.storage` accepts
- nothing (null): an SQLite file `studies/<study_name>.db` under the folder you run in;
- any SQLAlchemy URL Optuna accepts: `sqlite:///studies/x.db`, `postgresql://user:pw@host/db`, ...;
- `journal:PATH`: an Optuna journal file (`journal:///shared/studies/x.log` is absolute).

Relative file paths are made absolute against the folder the sweep was started in, so that
every trial process (local, submitit or SLURM) opens the same file.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from makemore_sweep.errors import StorageError
from makemore_sweep.tracking import mask_secrets

STUDIES_DIR = "studies"
SQLITE_PREFIX = "sqlite:///"
JOURNAL_PREFIX = "journal:"
# Seconds an SQLite writer waits for another process's lock before giving up; trials of
# parallel and cooperating sweeps write to one file.
SQLITE_LOCK_TIMEOUT_S = 60


def resolve_storage_url(storage: str | None, study_name: str, base_dir: Path) -> str:
    """The absolute storage URL every process of a sweep uses."""
    if storage is None or str(storage).strip() == "":
        return f"{SQLITE_PREFIX}{(base_dir / STUDIES_DIR / f'{study_name}.db').resolve()}"
    url = str(storage).strip()
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX) :]
        if path and path != ":memory:" and not path.startswith("/"):
            return f"{SQLITE_PREFIX}{(base_dir / path).resolve()}"
        return url
    if url.startswith(JOURNAL_PREFIX):
        return f"{JOURNAL_PREFIX}{_journal_path(url, base_dir)}"
    return url


def _journal_path(url: str, base_dir: Path) -> Path:
    path = url[len(JOURNAL_PREFIX) :]
    path = path.removeprefix("//")  # journal:///abs/file.log → /abs/file.log; journal://rel.log → rel.log
    return (base_dir / path).resolve()


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> BaseStorage:
    """Open (creating files and tables as needed) the storage at `url`, an absolute URL.

    Heartbeats let other sweep processes tell a crashed trial from a live one; Optuna
    supports them on SQL databases only (see `trial_leases.py` for the journal case).
    """
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = _journal_path(url, Path("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = None
        if url.startswith(SQLITE_PREFIX):
            path = url[len(SQLITE_PREFIX) :]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: stable since Optuna 2.9
            return RDBStorage(
                with_installed_postgres_driver(url),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
            )
    except Exception as error:  # SQLAlchemy, driver and file errors all mean the same to a user
        raise StorageError(
            f"Cannot open the Optuna storage {mask_secrets(url)}: {_first_line(error)}; "
            "check hydra.sweeper.storage."
        ) from error


def with_installed_postgres_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2; use psycopg2 when only that is installed."""
    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        return url
    return "postgresql+psycopg2://" + url[len("postgresql://") :]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    reason = text[0] if text else type(error).__name__
    if error.__cause__ is not None:  # e.g. "Failed to import DB access module" hides which one
        reason = f"{reason}: {_first_line(error.__cause__)}"
    return mask_secrets(reason)
