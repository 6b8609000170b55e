"""A worker's answer to SIGTERM: finish or release the trial at hand, then stop (worker.py).

Inside a trial's training, Lightning's own handler stops the run in good order, and chains to
the handler installed here, which only notes the request; outside training (composing,
evaluating, logging) a noted request ends the worker once the trial at hand is recorded, and a
worker waiting for work stops at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from makemore_sweep.errors import EXIT_SIGTERM


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
