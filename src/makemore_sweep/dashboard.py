"""optuna-dashboard over a study's storage, on 127.0.0.1 only (`make dashboard STORAGE=... STUDY=...`).

    python -m makemore_sweep.dashboard --storage URL [--study NAME] [--port 8080]

Opens the same storages as makemore-report (database URL or journal file), checks the study
exists, prints the address of its page, then serves until interrupted.
"""

from __future__ import annotations

import argparse

from makemore_sweep.errors import ConfigError, StorageError, exit_cleanly_on_user_error
from makemore_sweep.report import STORAGE_HELP
from makemore_sweep.tracking import mask_secrets

HOST = "127.0.0.1"  # never 0.0.0.0: the dashboard can edit studies and has no authentication
DEFAULT_PORT = 8080


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m makemore_sweep.dashboard",
        description="Serve optuna-dashboard on 127.0.0.1.",
    )
    parser.add_argument(
        "--storage",
        required=True,
        help=STORAGE_HELP,
    )
    parser.add_argument("--study", help="study to open (its address is printed)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})"
    )
    return parser.parse_args(argv)


@exit_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is invalid: it must be between 1 and 65535.")
    import optuna
    from optuna_dashboard import run_server

    from makemore_sweep.report_data import open_storage

    storage = open_storage(args.storage)
    base = f"http://{HOST}:{args.port}/dashboard"
    if args.study:
        names = optuna.get_all_study_names(storage)
        if args.study not in names:
            listing = ", ".join(sorted(names)) or "no studies at all"
            raise StorageError(
                f"The storage {mask_secrets(args.storage)} has no study named {args.study!r} (it has {listing})."
            )
        study_id = storage.get_study_id_from_name(args.study)
        print(f"optuna-dashboard: study {args.study} at {base}/studies/{study_id}", flush=True)
    else:
        print(f"optuna-dashboard: {base}", flush=True)
    try:
        run_server(storage, host=HOST, port=args.port)
    except OSError as error:  # the port is taken
        raise ConfigError(
            f"--port {args.port} cannot be used on {HOST} ({error.strerror}); pick another port."
        ) from error
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
