"""Where an Optuna study lives: the storage URL of a sweep, and opening it with a clear error.

`hydra.sweeper.storage` accepts
- nothing (null): an SQLite file `studies/<study_name>.db` under the folder you run in;
- any SQLAlchemy URL Optuna accepts: `sqlite:///studies/x.db`, `postgresql://user:pw@host/db`, ...;
- `journal:PATH`: an Optuna journal file (`journal:///shared/studies/x.log` is absolute).

Opening a storage (with one-sentence errors) is `storage.open_storage`.
Relative file paths are made absolute against the folder the sweep was started in, so that
every trial process (local, submitit or SLURM) opens the same file.
"""

from __future__ import annotations

from pathlib import Path

from optuna.storages import BaseStorage

from makemore_sweep import storage
from makemore_sweep.errors import StorageError
from makemore_sweep.storage import (
    JOURNAL_PREFIX,
    journal_path,
    with_installed_postgres_driver,  # noqa: F401 (re-exported)
)

STUDIES_DIR = "studies"
SQLITE_PREFIX = "sqlite:///"


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
        return f"{JOURNAL_PREFIX}{(base_dir / journal_path(url)).resolve()}"
    return url


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> BaseStorage:
    """`storage.open_storage` for a sweep: its error also names the key to fix."""
    try:
        opened = storage.open_storage(url, heartbeat_interval, grace_period)
    except StorageError as error:
        raise StorageError(f"{str(error).rstrip('.')}; check hydra.sweeper.storage.") from None
    assert opened is not None  # resolve_storage_url never gives an empty URL
    return opened
