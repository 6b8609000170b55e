"""What a configuration value may be, written once next to its field in `schema.py`.

Each field of the schema carries a `Rule` in its metadata (`checked(default, Integer(1))`).
The rule says in words what is allowed (`an integer ≥ 1`), tells whether a value is allowed,
and raises the one sentence every bad value ends in:
`model.n_hidden=-5 is invalid: it must be an integer ≥ 1.` — the key named by its dotted path.
The same words serve when OmegaConf refuses a value before any rule sees it (`model.n_hidden=abc`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from makemore_sweep.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy/Lightning seeds are unsigned 32-bit
FRACTION_SUM_TOLERANCE = 1e-6
RULE = "rule"  # the key of a field's rule in its dataclass metadata


def show(value: Any) -> str:
    """The value as typed, quoted when it is empty or holds invisible characters (keeps one line)."""
    if isinstance(value, str) and (not value.isprintable() or value != value.strip() or not value):
        return repr(value)
    return str(value)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Rule:
    allowed: str  # what is allowed, in words: "an integer ≥ 1"

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def check(self, key: str, value: Any) -> None:
        if not self.ok(value):
            refuse(key, value, self.allowed)


def refuse(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={show(value)} is invalid: it must be {allowed}.")


@dataclass(frozen=True)
class Integer(Rule):
    minimum: int
    maximum: int | None = None
    optional: bool = False  # null allowed

    @property
    def allowed(self) -> str:  # type: ignore[override]
        text = (
            f"an integer ≥ {self.minimum}"
            if self.maximum is None
            else f"an integer in [{self.minimum}, {self.maximum}]"
        )
        return f"{text} or null" if self.optional else text

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return (
            is_integer(value)
            and value >= self.minimum
            and (self.maximum is None or value <= self.maximum)
        )


@dataclass(frozen=True)
class Number(Rule):
    """A finite number in the interval from `low` to `high`, each end open or closed."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.high == math.inf:
            return f"a number {'>' if self.low_open else '≥'} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"a number in {left}{self.low:g}, {self.high:g}{right}"

    def ok(self, value: Any) -> bool:
        if not is_number(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


@dataclass(frozen=True)
class OneOf(Rule):
    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"one of {', '.join(self.choices)}"

    def ok(self, value: Any) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class Flag(Rule):
    allowed: str = "true or false"

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Text(Rule):
    """A string that is not blank (or null, when `optional`)."""

    allowed: str
    optional: bool = False

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return isinstance(value, str) and bool(value.strip())


@dataclass(frozen=True)
class Fractions(Rule):
    """`count` numbers in (0, 1) that add up to 1, such as the 80/10/10 train/val/test split."""

    count: int

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"a list of {self.count} numbers in (0, 1) that sum to 1, e.g. [0.8, 0.1, 0.1]"

    def ok(self, value: Any) -> bool:
        items = list(value) if isinstance(value, list | tuple) else None
        if (
            items is None
            or len(items) != self.count
            or not all(is_number(v) and 0 < v < 1 for v in items)
        ):
            return False
        return abs(math.fsum(items) - 1.0) <= FRACTION_SUM_TOLERANCE

    def check(self, key: str, value: Any) -> None:
        items = list(value) if isinstance(value, list | tuple) else None
        if (
            items
            and len(items) == self.count
            and all(is_number(v) and 0 < v < 1 for v in items)
            and not self.ok(value)
        ):
            raise ConfigError(
                f"{key}={show(value)} is invalid: its fractions sum to {math.fsum(items):g}, not 1."
            )
        super().check(key, value)


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field with its default and its rule (lists get a fresh copy per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={RULE: rule})
    return field(default=default, metadata={RULE: rule})
