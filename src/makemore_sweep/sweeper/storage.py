"""Optuna storage from one string: SQLite on one machine, PostgreSQL or a journal file for many.

- `sqlite:///studies/NAME.db`: the single-machine default. SQLite's file locking is unreliable
  on network file systems, so do not share it between nodes.
- `postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB` (or any SQLAlchemy URL Optuna supports):
  many workers on many nodes; the database does the locking.
- `journal:PATH` (`journal:studies/NAME.log`, `journal:///shared/studies/NAME.log`): an Optuna
  journal file on a shared file system (NFS v3+), when no database server is at hand.

`hydra.sweeper.storage` may also be null: an SQLite file `studies/<study_name>.db` under the folder
the sweep runs in. `resolve_storage_url` makes relative file paths absolute against that folder, so
every trial process (local, submitit or SLURM) opens the same file.

`open_storage` turns every driver and connection error into a `StorageError` with one sentence
that names the URL, its password masked, so an unreachable server or an unwritable path fails
before any trial trains; `open_sweep_storage` adds the key to fix. `check_storage_url` is the same
check for callers that only validate.
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from sqlalchemy.engine import make_url

from makemore_sweep.errors import StorageError
from makemore_sweep.redaction import mask_secrets

JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
STUDIES_DIR = "studies"
CONNECT_TIMEOUT_S = 10  # a server that drops packets fails within this, instead of hanging
# Workers that start together race to create Optuna's tables in an empty database; the loser
# sees a duplicate-object error and only has to try again.
CREATE_ATTEMPTS = 5
# Seconds an SQLite writer waits for another process's lock before giving up; trials of
# parallel and cooperating sweeps write to one file.
SQLITE_LOCK_TIMEOUT_S = 60


def journal_path(url: str) -> Path:
    """`journal:relative/file.log` or `journal:///absolute/file.log` → the file's path."""
    rest = url[len(JOURNAL_PREFIX) :]
    return Path("/" + rest.lstrip("/")) if rest.startswith("///") else Path(rest.removeprefix("//"))


def open_storage(
    url: str | None, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> BaseStorage | None:
    """The Optuna storage `url` names (None: in memory); StorageError names the URL, masked.

    Heartbeats let other sweep processes tell a crashed trial from a live one; Optuna supports
    them on SQL databases only (see `leases.py`: sweeps keep their own heartbeats).
    """
    if not url:
        return None
    if url.startswith(JOURNAL_PREFIX):
        return _open_journal(journal_path(url))
    return _open_rdb(url, heartbeat_interval, grace_period)


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


JOURNAL_IN_SWEEP_DIR = "optuna-study.journal"


def cluster_storage_url(storage: str | None, sweep_dir: Path, base_dir: Path) -> str:
    """The storage of a sweep whose jobs run on cluster nodes: never an SQLite file.

    SQLite's locks do not hold across the nodes' network file system, so null means a journal
    file in the sweep folder (which the nodes share anyway), and an SQLite URL is refused.
    """
    if storage is None or str(storage).strip() == "":
        return f"{JOURNAL_PREFIX}{(base_dir / sweep_dir / JOURNAL_IN_SWEEP_DIR).resolve()}"
    url = str(storage).strip()
    if url.startswith("sqlite:"):
        raise StorageError(
            f"hydra.sweeper.storage={mask_secrets(url)} is an SQLite file, which jobs on several cluster nodes "
            "must not share; use null (a journal file in the sweep folder), journal:PATH or a postgresql:// URL."
        )
    return resolve_storage_url(url, "", base_dir)


def local_lock_path(url: str) -> Path | None:
    """A lock file beside an SQLite study, so the workers of its one machine ask for trials one at
    a time (and never start more than n_trials between them). None for journal files, which may
    sit on a network file system where locks are unreliable, and for database servers."""
    if url.startswith(SQLITE_PREFIX) and url[len(SQLITE_PREFIX) :] not in ("", ":memory:"):
        return Path(url[len(SQLITE_PREFIX) :] + ".asklock")
    return None


def open_sweep_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> BaseStorage:
    """`open_storage` for a sweep: its error also names the key to fix."""
    try:
        opened = open_storage(url, heartbeat_interval, grace_period)
    except StorageError as error:
        raise StorageError(f"{str(error).rstrip('.')}; check hydra.sweeper.storage.") from None
    assert opened is not None  # resolve_storage_url never gives an empty URL
    return opened


def with_installed_postgres_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2; use psycopg2 when only that is installed."""
    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        return url
    return "postgresql+psycopg2://" + url[len("postgresql://") :]


def check_storage_url(url: str) -> None:
    """Open the storage at `url` once (creating a new study database as a sweep would)."""
    storage = open_storage(url)
    if isinstance(storage, RDBStorage):
        storage.engine.dispose()


def describe_storage(url: str | None) -> str:
    """The storage as it may be printed or logged: passwords masked, in-memory said plainly."""
    return mask_secrets(url) if url else "in memory (nothing is kept after the sweep)"


def _open_rdb(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> RDBStorage:
    shown = mask_secrets(url)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(
            f"The storage URL {shown} is not a database URL; use e.g. sqlite:///studies/NAME.db, "
            "postgresql+psycopg2://USER@HOST/DB or journal:PATH."
        ) from None
    backend, password = parsed.get_backend_name(), parsed.password
    if backend == "postgres":
        raise StorageError(f"The storage URL {shown} uses the scheme postgres://; write postgresql:// instead.")
    if backend == "sqlite" and parsed.database:
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"Cannot open the Optuna storage {shown}: cannot create {folder} ({error.strerror}).") from None
    # pool_pre_ping: a sweep waits hours for cluster jobs, and idle connections get dropped.
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    elif backend == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: stable since Optuna 2.9
                return RDBStorage(
                    with_installed_postgres_driver(url),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                )
        except (ImportError, sqlalchemy.exc.NoSuchModuleError) as error:
            # SQLAlchemy 2.1 picks psycopg (3) for postgresql://; postgresql+psycopg2:// picks psycopg2.
            missing = _reason(error.__cause__ or error, password)
            fix = (
                "install psycopg[binary], or write postgresql+psycopg2:// to use psycopg2"
                if backend == "postgresql"
                else "install its driver"
            )
            raise StorageError(
                f"The storage URL {shown} needs a database driver that is not installed ({missing}); {fix}."
            ) from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            if attempt == CREATE_ATTEMPTS:
                raise StorageError(f"Cannot open the Optuna storage {shown}: {_reason(error, password)}.") from None
            time.sleep(0.2 * attempt)
        except Exception as error:  # noqa: BLE001 (driver errors vary by backend; all mean "unusable")
            raise StorageError(f"Cannot open the Optuna storage {shown}: {_reason(error, password)}.") from None
    raise AssertionError("unreachable")


def _open_journal(path: Path) -> JournalStorage:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open(O_EXCL) lock works on NFS v3+, where shared journal files usually live.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)
    except OSError as error:
        raise StorageError(f"Cannot open the Optuna journal file {path}: {error.strerror or error}.") from None


def _reason(error: BaseException, password: str | None) -> str:
    """The first lines of the driver's message, never the password."""
    original = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = " ".join(lines[:2]) if lines else type(original).__name__
    if password:
        reason = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", "***", reason)
    return mask_secrets(reason).rstrip(".?!")
