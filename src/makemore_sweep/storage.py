"""Checking an Optuna storage URL before a sweep starts any training.

`check_storage_url(url)` opens the storage once (creating the tables of a new SQLite file or
database, as the sweep would) and turns driver and connection errors into a `StorageError`
with one sentence that names the URL, its password masked. Sweepers call it first, so an
unreachable PostgreSQL server or an unwritable SQLite path fails in a second, not after the
first trial has trained.
"""

from __future__ import annotations

import re
from typing import Any

from makemore_sweep.errors import StorageError
from makemore_sweep.tracking import mask_secrets

CONNECT_TIMEOUT_S = 10  # a server that drops packets fails within this, instead of hanging


def check_storage_url(url: str) -> None:
    """Open the Optuna RDB storage at `url`; raise StorageError with one sentence if it cannot be used."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    shown = mask_secrets(url)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(
            f"The storage URL {shown} is not a database URL; use e.g. sqlite:///studies/NAME.db "
            "or postgresql://USER@HOST/DB."
        ) from None
    password = parsed.password
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise StorageError(f"The storage URL {shown} uses the scheme postgres://; write postgresql:// instead.")
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(backend))
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as error:
        # SQLAlchemy 2.1 picks psycopg (3) for postgresql://; postgresql+psycopg2:// picks psycopg2.
        missing = _reason(error.__cause__ or error, password)
        fix = "install psycopg[binary], or write postgresql+psycopg2:// to use psycopg2" if backend == "postgresql" else "install its driver"
        raise StorageError(f"The storage URL {shown} needs a database driver that is not installed ({missing}); {fix}.") from None
    except Exception as error:  # noqa: BLE001 (SQLAlchemy/driver errors vary by backend; all mean "unusable")
        raise StorageError(f"Cannot open the Optuna storage {shown}: {_reason(error, password)}.") from None
    storage.engine.dispose()


def _engine_kwargs(backend: str) -> dict[str, Any]:
    if backend == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def _reason(error: BaseException, password: str | None) -> str:
    """The first line of the driver's message, never the password."""
    original = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = " ".join(lines[:2]) if lines else type(original).__name__
    if password:
        reason = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", "***", reason)
    return mask_secrets(reason).rstrip(".?!")
