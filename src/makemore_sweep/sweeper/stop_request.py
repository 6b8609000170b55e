"""SIGTERM to a sweep worker: finish or release the trial at hand, then stop; take no new trial.

The sweep passes Ctrl-C on to its workers as SIGTERM, and SLURM preempts with it. Inside a
trial's training, Lightning's own handler stops the run in good order (its checkpoint is kept
and the trial released, see training/run.py); Lightning chains to the handler installed here,
which only notes the request. Outside training (composing, evaluating, logging, waiting) the
worker would otherwise go on to its next trial: submitit's handler merely logs SIGTERM. So a
request noted there ends the worker once the trial at hand is recorded, and a worker waiting
for work stops at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_SIGTERM = 128 + signal.SIGTERM  # the shell's code for a process stopped by SIGTERM


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self._waiting = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._waiting:
            raise SystemExit(EXIT_SIGTERM)

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGTERM in this block; the previous handler comes back afterwards."""
        previous: Any = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A block that may be cut short: nothing is under way in it (e.g. an idle sleep)."""
        if self.requested:
            raise SystemExit(EXIT_SIGTERM)
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def stop_if_requested(self) -> None:
        if self.requested:
            raise SystemExit(EXIT_SIGTERM)
