"""Optuna storage from one string: SQLite on one machine, PostgreSQL or a journal file for many.

- `sqlite:///studies/NAME.db`: the single-machine default. SQLite's file locking is unreliable
  on network file systems, so do not share it between nodes.
- `postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB` (or any SQLAlchemy URL Optuna supports):
  many workers on many nodes; the database does the locking.
- `journal:PATH` (`journal:studies/NAME.log`, `journal:///shared/studies/NAME.log`): an Optuna
  journal file on a shared file system (NFS v3+), when no database server is at hand.

Every message that shows a URL masks its password (`tracking.mask_secrets`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from makemore_sweep.errors import StorageError
from makemore_sweep.tracking import mask_secrets

JOURNAL_PREFIX = "journal:"
# Workers that start together race to create Optuna's tables in an empty database; the loser
# sees a duplicate-object error and only has to try again.
CREATE_ATTEMPTS = 5


def journal_path(url: str) -> Path:
    """`journal:relative/file.log` or `journal:///absolute/file.log` → the file's path."""
    rest = url[len(JOURNAL_PREFIX) :]
    return Path("/" + rest.lstrip("/")) if rest.startswith("///") else Path(rest.removeprefix("//"))


def open_storage(url: str | None) -> BaseStorage | None:
    """The Optuna storage `url` names (None: in memory); StorageError names the URL, masked."""
    if not url:
        return None
    if url.startswith(JOURNAL_PREFIX):
        return _open_journal(journal_path(url))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # pool_pre_ping: a sweep waits hours for cluster jobs, and idle connections get dropped.
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}  # an unreachable host fails in 10 s
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            if attempt == CREATE_ATTEMPTS:
                raise _storage_error(url, error) from error
            time.sleep(0.2 * attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            raise _storage_error(url, error) from error
    raise AssertionError("unreachable")


def _open_journal(path: Path) -> JournalStorage:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open(O_EXCL) lock works on NFS v3+, where shared journal files usually live.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)
    except OSError as error:
        raise StorageError(
            f"Cannot open the Optuna journal file {path}: {error.strerror or error}."
        ) from error


def _storage_error(url: str, error: BaseException) -> StorageError:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0].rstrip(".")
    return StorageError(
        f"Cannot open the Optuna storage {mask_secrets(url)}: {mask_secrets(reason)}."
    )


def describe_storage(url: str | None) -> str:
    """The storage as it may be printed or logged: passwords masked, in-memory said plainly."""
    return mask_secrets(url) if url else "in memory (nothing is kept after the sweep)"
