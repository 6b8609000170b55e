"""optuna-dashboard over a study's storage, on 127.0.0.1 only.

Opens the same storages as makemore-report (database URL or journal file), checks the study
exists, prints the address of its page, then serves until interrupted.
"""

from __future__ import annotations

from makemore_sweep.errors import ConfigError, MissingExtraError, StorageError
from makemore_sweep.redaction import mask_secrets

HOST = "127.0.0.1"  # never 0.0.0.0: the dashboard can edit studies and has no authentication
DEFAULT_PORT = 8080


def serve_dashboard(storage_url: str, study: str | None, port: int = DEFAULT_PORT) -> None:
    """Serve optuna-dashboard for `storage_url` on 127.0.0.1:`port` until interrupted."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is invalid: it must be between 1 and 65535.")
    try:
        from optuna_dashboard import run_server
    except ModuleNotFoundError as error:  # an extra: pip install 'makemore-sweep[dashboard]'
        raise MissingExtraError.needs("the dashboard", "optuna-dashboard", "dashboard") from error
    import optuna

    from makemore_sweep.report.sources import open_storage

    storage = open_storage(storage_url)
    base = f"http://{HOST}:{port}/dashboard"
    if study:
        names = optuna.get_all_study_names(storage)
        if study not in names:
            listing = ", ".join(sorted(names)) or "no studies at all"
            raise StorageError(
                f"The storage {mask_secrets(storage_url)} has no study named {study!r} (it has {listing})."
            )
        study_id = storage.get_study_id_from_name(study)
        print(f"optuna-dashboard: study {study} at {base}/studies/{study_id}", flush=True)
    else:
        print(f"optuna-dashboard: {base}", flush=True)
    try:
        run_server(storage, host=HOST, port=port)
    except OSError as error:  # the port is taken
        raise ConfigError(
            f"--port {port} cannot be used on {HOST} ({error.strerror}); pick another port."
        ) from error
    except KeyboardInterrupt:
        pass
