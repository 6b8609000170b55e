"""optuna-dashboard over a study's storage, on 127.0.0.1 only (`make dashboard STORAGE=... STUDY=...`).

python -m makemore_sweep.cli.dashboard --storage URL [--study NAME] [--port 8080]
"""

from __future__ import annotations

import argparse

from makemore_sweep.cli.report import STORAGE_HELP
from makemore_sweep.errors import exit_cleanly_on_user_error
from makemore_sweep.report.dashboard import DEFAULT_PORT, serve_dashboard


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m makemore_sweep.cli.dashboard",
        description="Serve optuna-dashboard on 127.0.0.1.",
    )
    parser.add_argument("--storage", required=True, help=STORAGE_HELP)
    parser.add_argument("--study", help="study to open (its address is printed)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})"
    )
    return parser.parse_args(argv)


@exit_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    serve_dashboard(args.storage, args.study, args.port)


if __name__ == "__main__":
    main()
