"""Optuna storage from one string: SQLite on one machine, PostgreSQL or a journal file for many.

Runs in every process of a sweep (and in makemore-report, which reads studies through it). It
owns the storage URL: where a study lives, opening it (once per process for workers and the
runs inside them: `shared_sweep_storage`), checking it, and the study's claim lock.

- `sqlite:///studies/NAME.db`: the single-machine default. SQLite's file locking is unreliable
  on network file systems, so do not share it between nodes.
- `postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB` (or any SQLAlchemy URL Optuna supports):
  many workers on many nodes; the database does the locking.
- `journal:PATH` (`journal:studies/NAME.log`, `journal:///shared/studies/NAME.log`): an Optuna
  journal file on a shared file system (NFS v3+), when no database server is at hand.

`hydra.sweeper.storage` may also be null: an SQLite file `studies/<study_name>.db` under the folder
the sweep runs in. `resolve_storage_url` makes relative file paths absolute against that folder, so
every trial process (local, submitit or SLURM) opens the same file. When the launcher sends jobs
to SLURM nodes, never SQLite (its locks do not hold across nodes): null means a journal file in
the sweep folder and an SQLite URL is refused (`study_storage_url`).

`open_storage` turns every driver and connection error into a `StorageError` with one sentence
that names the URL, its password masked, so an unreachable server or an unwritable path fails
before any trial trains; `open_sweep_storage` adds the key to fix. `check_storage_location`
refuses a mistyped scheme ("did you mean") or a study file whose folder does not exist before
anything is opened, and never creates a folder: a sweep creates only its default ones
(`make_default_folder`).
"""

from __future__ import annotations

import difflib
import fcntl
import importlib.util
import os
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL

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
JOURNAL_CLAIM_STALE_S = 120
# A lost node's database session (and the claim lock it holds) is dropped within about a
# minute instead of TCP's default two hours.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
# What a mistyped scheme is compared with, for "did you mean".
KNOWN_SCHEMES = (
    "sqlite",
    "postgresql",
    "postgresql+psycopg2",
    "postgresql+psycopg",
    "mysql",
    "mysql+pymysql",
    "journal",
)


def journal_path(url: str) -> Path:
    """`journal:relative/file.log` or `journal:///absolute/file.log` → the file's path."""
    rest = url[len(JOURNAL_PREFIX) :]
    return Path("/" + rest.lstrip("/")) if rest.startswith("///") else Path(rest.removeprefix("//"))


def open_storage(url: str | None) -> BaseStorage | None:
    """The Optuna storage `url` names (None: in memory); StorageError names the URL, masked.

    Optuna's own heartbeats are not used: they exist on SQL databases only, and a sweep keeps
    heartbeats of its own on every storage (`claims.py`).
    """
    if not url:
        return None
    if url.startswith(JOURNAL_PREFIX):
        return _open_journal(journal_path(url))
    return _open_rdb(url)


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


def launcher_runs_on_cluster(launcher_config: Any) -> bool:
    """True when the configured launcher (`hydra.launcher`) sends jobs to SLURM."""
    # Imported here: makemore-report reads studies through this module without Hydra's launchers.
    from hydra.utils import get_class
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    target = launcher_config.get("_target_") if launcher_config is not None else None
    try:
        launcher = get_class(str(target)) if target else None
    except Exception:  # noqa: BLE001 - a launcher we cannot import is not ours to judge
        return False
    return launcher is not None and (
        issubclass(launcher, SlurmLauncher) or getattr(launcher, "cluster", None) == "slurm"
    )


def study_storage_url(hydra_config: Any, study_name: str, base_dir: Path) -> str:
    """The absolute storage URL of the study, from Hydra's config node (`hydra`), worked out
    alike by the sweep process and by every trial's job."""
    storage = hydra_config.sweeper.get("storage")
    if launcher_runs_on_cluster(hydra_config.get("launcher")):
        return cluster_storage_url(storage, Path(str(hydra_config.sweep.dir)), base_dir)
    return resolve_storage_url(storage, study_name, base_dir)


@contextmanager
def claim_lock(url: str, storage: BaseStorage, study_name: str) -> Iterator[None]:
    """The study's own lock, held while a process takes over or asks for a trial.

    Optuna's WAITING → RUNNING pop settles who continues an abandoned trial; this lock makes
    sure a process that saw a trial abandoned a moment ago cannot put it back after another
    took it over, and that workers never start more than n_trials between them. Each storage
    brings its own, and none leaves a file behind:
    - SQLite (one machine): an flock of the study's folder;
    - a journal file (NFS): Optuna's journal lock (an O_EXCL file, removed on release) beside it;
    - PostgreSQL: a session advisory lock keyed by the study's name;
    - other servers (MySQL, ...): none. Then a process can pass the read-again check between
      another's pop and its claim, and two processes may continue one trial: share a study
      between processes on PostgreSQL or a journal file.
    """
    path = _file_of(url)
    if path is not None and url.startswith(SQLITE_PREFIX):
        with _folder_lock(path.parent):
            yield
    elif path is not None:
        # A lock older than this is taken for a dead holder's: generous, since asking TPE for
        # a trial on a long journal over NFS can take seconds.
        lock = JournalFileOpenLock(f"{path}.claim", grace_period=JOURNAL_CLAIM_STALE_S)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
    elif isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql":
        key = zlib.crc32(study_name.encode())  # advisory locks take a 64-bit integer
        with storage.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    else:
        yield


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    # A folder's descriptor takes flock like a file's, and no lock file is left behind.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: the pop alone settles takeovers
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def open_sweep_storage(url: str) -> BaseStorage:
    """`open_storage` for a sweep: its error also names the key to fix."""
    with _naming_the_sweep_key():
        opened = open_storage(url)
    assert opened is not None  # resolve_storage_url never gives an empty URL
    return opened


_SHARED: dict[str, BaseStorage] = {}


def shared_sweep_storage(url: str) -> BaseStorage:
    """`open_sweep_storage`, once per URL and process: a worker and the runs inside it share it."""
    if url not in _SHARED:
        _SHARED[url] = open_sweep_storage(url)
    return _SHARED[url]


def check_sweep_storage_location(url: str) -> None:
    """`check_storage_location` for a sweep: its error also names the key to fix."""
    with _naming_the_sweep_key():
        check_storage_location(url)


@contextmanager
def _naming_the_sweep_key() -> Iterator[None]:
    try:
        yield
    except StorageError as error:
        text = str(error)
        if text.endswith("?") or "pip install" in text:  # it already says what to do
            raise
        raise StorageError(f"{text.rstrip('.')}; check hydra.sweeper.storage.") from None


def with_installed_postgres_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2; use psycopg2 when only that is installed."""
    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        return url
    return "postgresql+psycopg2://" + url[len("postgresql://") :]


def check_storage_location(url: str) -> None:
    """Refuse a storage URL before anything is opened or created: text that is no database URL,
    an unknown scheme ("did you mean"), a study file whose folder does not exist."""
    if url.startswith(JOURNAL_PREFIX):
        _check_folder(journal_path(url), url)
        return
    _parse_database_url(url)


def _parse_database_url(url: str) -> URL:
    shown = mask_secrets(url)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(
            f"The storage URL {shown} is not a database URL; use e.g. sqlite:///studies/NAME.db, "
            "postgresql+psycopg2://USER@HOST/DB or journal:PATH."
        ) from None
    if parsed.get_backend_name() == "postgres":
        raise StorageError(
            f"The storage URL {shown} uses the scheme postgres://; write postgresql:// instead."
        )
    _check_dialect(parsed, shown)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        _check_folder(Path(parsed.database).expanduser(), shown)
    return parsed


def _open_rdb(url: str) -> RDBStorage:
    shown = mask_secrets(url)
    parsed = _parse_database_url(url)
    backend, password = parsed.get_backend_name(), parsed.password
    # pool_pre_ping: a sweep waits hours for cluster jobs, and idle connections get dropped.
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S, **PG_KEEPALIVES}
    elif backend == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return RDBStorage(with_installed_postgres_driver(url), engine_kwargs=engine_kwargs)
        except (ImportError, sqlalchemy.exc.NoSuchModuleError) as error:
            # SQLAlchemy 2.1 picks psycopg (3) for postgresql://; postgresql+psycopg2:// picks psycopg2.
            if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
                # psycopg2 is what the `postgres` extra brings (and what postgresql:// falls back to).
                raise StorageError(
                    f"The storage URL {shown} needs the PostgreSQL driver psycopg2: "
                    "pip install 'makemore-sweep[postgres]'"
                ) from None
            missing = _reason(error.__cause__ or error, password)
            fix = "install psycopg[binary]" if backend == "postgresql" else "install its driver"
            raise StorageError(
                f"The storage URL {shown} needs a database driver that is not installed ({missing}); {fix}."
            ) from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            if attempt == CREATE_ATTEMPTS:
                raise StorageError(
                    f"Cannot open the Optuna storage {shown}: {_reason(error, password)}."
                ) from None
            time.sleep(0.2 * attempt)
        except Exception as error:  # noqa: BLE001 (driver errors vary by backend; all mean "unusable")
            raise StorageError(
                f"Cannot open the Optuna storage {shown}: {_reason(error, password)}."
            ) from None
    raise AssertionError("unreachable")


def _open_journal(path: Path) -> JournalStorage:
    check_storage_location(f"{JOURNAL_PREFIX}{path}")
    try:
        # The open(O_EXCL) lock works on NFS v3+, where shared journal files usually live.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)
    except OSError as error:
        raise StorageError(
            f"Cannot open the Optuna journal file {path}: {error.strerror or error}."
        ) from None


def _check_dialect(parsed: URL, shown: str) -> None:
    """A scheme SQLAlchemy does not know is a typo more often than a missing plugin."""
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        scheme = parsed.drivername
        close = difflib.get_close_matches(scheme, KNOWN_SCHEMES, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]}{shown[len(scheme) :]}?"
            if close
            else "use sqlite:///FILE, postgresql://... or journal:FILE."
        )
        raise StorageError(
            f"The storage URL {shown} has the unknown scheme {scheme}; {hint}"
        ) from None


def _check_folder(file: Path, shown: str) -> None:
    """A study file's folder must exist: creating a mistyped path would hide the mistake."""
    folder = file.parent
    if not folder.is_dir():
        raise StorageError(
            f"The folder {folder} of the storage {shown} does not exist; create it, or correct the path."
        )


def make_default_folder(url: str, folders: list[Path]) -> None:
    """Create the folder of a study file when it is one of the defaults (`studies/`, the sweep
    folder of a cluster journal); any other folder must exist already."""
    path = _file_of(url)
    if path is not None and path.parent.resolve() in {folder.resolve() for folder in folders}:
        path.parent.mkdir(parents=True, exist_ok=True)


def _file_of(url: str) -> Path | None:
    if url.startswith(JOURNAL_PREFIX):
        return journal_path(url)
    if url.startswith(SQLITE_PREFIX) and url[len(SQLITE_PREFIX) :] not in ("", ":memory:"):
        return Path(url[len(SQLITE_PREFIX) :])
    return None


def _reason(error: BaseException, password: str | None) -> str:
    """The first lines of the driver's message, never the password."""
    original = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = " ".join(lines[:2]) if lines else type(original).__name__
    if password:
        reason = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", "***", reason)
    return mask_secrets(reason).rstrip(".?!")
