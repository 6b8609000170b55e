"""Errors a user can cause, and the one place that turns them into a clean exit.

Every error a user can provoke (a bad override, a missing file, an unreachable storage) is
raised as a `UserError` subclass carrying one sentence that names the culprit. The command-line
entry points catch them and print that sentence instead of a traceback
(set MAKEMORE_DEBUG=1 to see the traceback anyway).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from makemore_sweep.redaction import mask_secrets

T = TypeVar("T")
# The shell's codes for a process stopped by Ctrl-C or SIGTERM, which a stopped run exits with.
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class UserError(Exception):
    """A problem the user can fix; its message is one sentence naming the culprit."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value is outside its allowed range."""


class DataError(UserError):
    """The names file is missing, unreadable or unusable."""


class StorageError(UserError):
    """The Optuna storage cannot be reached or used."""


class MissingExtraError(UserError):
    """An optional feature's library is not installed; the message names the pip extra that brings it."""

    @classmethod
    def needs(cls, feature: str, package: str, extra: str) -> MissingExtraError:
        """E.g. "the dashboard needs optuna-dashboard: pip install 'makemore-sweep[dashboard]'"."""
        return cls(f"{feature} needs {package}: pip install 'makemore-sweep[{extra}]'")


class TrainingDiverged(UserError):
    """The training loss became NaN, infinite or larger than `divergence_loss`."""

    exit_code = 3

    def __init__(self, step: int, loss: float, limit: float | None = None) -> None:
        self.step = step
        self.loss = loss
        shown = f"{loss:.4g}"
        if limit is not None and math.isfinite(loss):
            shown += f" (above divergence_loss={limit:g})"
        super().__init__(
            f"Training diverged: the loss became {shown} at step {step}; "
            "lower optim.lr or clip gradients with optim.grad_clip."
        )
        self.limit = limit

    def __reduce__(self) -> tuple[type, tuple[int, float, float | None]]:
        # Exceptions pickle as cls(*args) = cls(message); a sweep's trial may raise this in
        # another process (submitit pickles it back), so rebuild it from its fields.
        return (type(self), (self.step, self.loss, self.limit))


class JobLost(Exception):
    """A job ended without a result (killed, out of memory, a lost node): its message is a plain
    sentence, printed as it is, without the class name a programming error would get."""


def one_line(error: Any) -> str:
    """The first line of an error (or a job's reason), secrets masked: a trial's `fail_reason`."""
    if isinstance(error, (UserError, JobLost)):
        text = str(error)  # a sentence for the user: no class name
    elif isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return mask_secrets(first)[:500]


def debug_enabled() -> bool:
    return os.environ.get("MAKEMORE_DEBUG", "") not in ("", "0", "false")


def report_user_error(error: UserError) -> None:
    """Print the one-sentence message of a user error on stderr."""
    print(f"error: {error}", file=sys.stderr, flush=True)


def exit_cleanly_on_user_error(func: Callable[..., T]) -> Callable[..., T]:
    """Decorate a console-script entry point: user errors exit non-zero with one line."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return func(*args, **kwargs)
        except UserError as error:
            if debug_enabled():
                raise
            report_user_error(error)
            raise SystemExit(error.exit_code) from None

    return wrapper
