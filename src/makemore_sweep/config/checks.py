"""Checking configuration values before any work, with messages that name the key and its range.

Hydra only knows that a key exists; what a value may be is checked here, once, so that
`model.n_hidden=-5` or `optim.lr=abc` ends in one sentence instead of a traceback deep in
torch. Every check reads the value through `_value`, which turns a missing key or a broken
interpolation into the same kind of sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from makemore_sweep.errors import ConfigError
from makemore_sweep.model.language_model import OPTIMIZER_NAMES
from makemore_sweep.model.lr_schedules import SCHEDULE_NAMES
from makemore_sweep.model.networks import NETWORK_NAMES

MAX_SEED = 2**32 - 1  # numpy/Lightning seeds are unsigned 32-bit
FRACTION_SUM_TOLERANCE = 1e-6
# Keys the code has a default for (constructor or dataclass defaults): a config may leave them out.
HAVE_DEFAULTS = frozenset(
    {
        "threads",
        "ckpt_path",
        "data.eval_batch_size",
        "data.split_seed",
        "data.fractions",
        "data.download",
        "model.batchnorm",
        "model.dropout",
        "model.bn_momentum",
        "model.direct",
        "optim.weight_decay",
        "optim.momentum",
        "optim.beta1",
        "optim.beta2",
        "optim.schedule",
        "optim.warmup_frac",
        "optim.final_lr_frac",
        "optim.decay_at_frac",
        "optim.decay_factor",
        "optim.grad_clip",
        "trainer.max_epochs",
    }
)
_ABSENT: Any = object()


def _value(cfg: DictConfig, key: str) -> Any:
    """The value of `key`, or _ABSENT for a left-out key that has a default."""
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except OmegaConfBaseException as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"{key} cannot be read ({reason}); give it a value, e.g. {key}=...") from None
    if value is _ABSENT and key not in HAVE_DEFAULTS:
        raise ConfigError(f"{key} is missing from the configuration; restore it, e.g. +{key}=...")
    return value


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={_show(value)} is invalid: it must be {allowed}.")


def _show(value: Any) -> str:
    """The value as typed, quoted when it is empty or holds invisible characters (keeps one line)."""
    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value)
    if isinstance(value, str) and (not value.isprintable() or value != value.strip() or not value):
        return repr(value)
    return str(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_integer(cfg: DictConfig, key: str, minimum: int, maximum: int | None = None) -> int | None:
    value = _value(cfg, key)
    if value is _ABSENT:
        return None
    in_range = _is_integer(value) and value >= minimum and (maximum is None or value <= maximum)
    if not in_range:
        allowed = f"an integer ≥ {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
        _fail(key, value, allowed)
    return int(value)


def check_optional_integer(cfg: DictConfig, key: str, minimum: int) -> int | None:
    value = _value(cfg, key)
    if value is None or value is _ABSENT:
        return None
    if not (_is_integer(value) and value >= minimum):
        _fail(key, value, f"an integer ≥ {minimum} or null")
    return int(value)


def check_number(
    cfg: DictConfig,
    key: str,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float | None:
    """A finite number in the interval from `low` to `high` (each end open or closed)."""
    value = _value(cfg, key)
    if value is _ABSENT:
        return None
    ok = _is_number(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        _fail(key, value, _interval(low, high, low_open, high_open))
    return float(value)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        return f"a number {'>' if low_open else '≥'} {low:g}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"a number in {left}{low:g}, {high:g}{right}"


def check_choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> str | None:
    value = _value(cfg, key)
    if value is _ABSENT:
        return None
    if value not in choices:
        _fail(key, value, f"one of {', '.join(choices)}")
    return str(value)


def check_flag(cfg: DictConfig, key: str) -> bool | None:
    value = _value(cfg, key)
    if value is _ABSENT:
        return None
    if not isinstance(value, bool):
        _fail(key, value, "true or false")
    return bool(value)


def check_fractions(cfg: DictConfig, key: str, count: int) -> tuple[float, ...] | None:
    """`count` numbers in (0, 1) that add up to 1, such as the 80/10/10 train/val/test split."""
    value = _value(cfg, key)
    if value is _ABSENT:
        return None
    allowed = f"a list of {count} numbers in (0, 1) that sum to 1, e.g. [0.8, 0.1, 0.1]"
    items = list(value) if isinstance(value, ListConfig | list | tuple) else None
    if items is None or len(items) != count or not all(_is_number(v) and 0 < v < 1 for v in items):
        _fail(key, value, allowed)
    assert items is not None
    if abs(math.fsum(items) - 1.0) > FRACTION_SUM_TOLERANCE:
        raise ConfigError(f"{key}={_show(value)} is invalid: its fractions sum to {math.fsum(items):g}, not 1.")
    return tuple(float(v) for v in items)


def validate_config(cfg: DictConfig, n_train: int | None = None) -> None:
    """Raise ConfigError naming the first key whose value is out of range.

    Called before any work with `n_train=None`, and again once the data is read with the
    number of training examples, to check that a batch fits in the training split.
    """
    check_integer(cfg, "seed", 0, MAX_SEED)
    check_number(cfg, "target_loss", 0.0, low_open=True)
    check_number(cfg, "divergence_loss", 0.0, low_open=True)
    check_optional_integer(cfg, "threads", 1)
    ckpt_path = _value(cfg, "ckpt_path")
    if ckpt_path not in (None, _ABSENT) and not (isinstance(ckpt_path, str) and ckpt_path):
        _fail("ckpt_path", ckpt_path, "null, last or the path of a checkpoint file")
    _check_data(cfg, n_train)
    _check_model(cfg)
    _check_optim(cfg)
    _check_trainer(cfg)


def _check_data(cfg: DictConfig, n_train: int | None) -> None:
    path = _value(cfg, "data.path")
    if not (isinstance(path, str) and path.strip()):
        _fail("data.path", path, "the path of a names file (one name per line)")
    check_integer(cfg, "data.block_size", 1)
    batch_size = check_integer(cfg, "data.batch_size", 1)
    check_integer(cfg, "data.eval_batch_size", 1)
    check_integer(cfg, "data.split_seed", 0, MAX_SEED)
    check_fractions(cfg, "data.fractions", 3)
    check_flag(cfg, "data.download")
    if n_train is not None and batch_size is not None and batch_size > n_train:
        _fail("data.batch_size", batch_size, f"at most the {n_train} training examples")


def _check_model(cfg: DictConfig) -> None:
    name = check_choice(cfg, "model.name", NETWORK_NAMES)
    if name == "bigram":
        return  # counts only: none of the network sizes apply
    for key in ("model.n_embd", "model.n_hidden", "model.n_layers"):
        check_integer(cfg, key, 1)
    check_flag(cfg, "model.batchnorm")
    check_number(cfg, "model.dropout", 0.0, 1.0, high_open=True)
    check_number(cfg, "model.bn_momentum", 0.0, 1.0)
    check_flag(cfg, "model.direct")


def _check_optim(cfg: DictConfig) -> None:
    check_choice(cfg, "optim.name", OPTIMIZER_NAMES)
    check_number(cfg, "optim.lr", 0.0, low_open=True)
    check_number(cfg, "optim.weight_decay", 0.0)
    check_number(cfg, "optim.momentum", 0.0, 1.0, high_open=True)
    check_number(cfg, "optim.beta1", 0.0, 1.0, high_open=True)
    check_number(cfg, "optim.beta2", 0.0, 1.0, high_open=True)
    check_choice(cfg, "optim.schedule", SCHEDULE_NAMES)
    check_number(cfg, "optim.warmup_frac", 0.0, 1.0, high_open=True)
    check_number(cfg, "optim.final_lr_frac", 0.0, 1.0)
    check_number(cfg, "optim.decay_at_frac", 0.0, 1.0)
    check_number(cfg, "optim.decay_factor", 0.0, low_open=True)
    check_number(cfg, "optim.grad_clip", 0.0)


def _check_trainer(cfg: DictConfig) -> None:
    if check_optional_integer(cfg, "trainer.max_epochs", 1) is None:
        check_integer(cfg, "trainer.max_steps", 1)
    check_integer(cfg, "trainer.val_every_n_steps", 1)
    check_integer(cfg, "trainer.steps_per_execution", 1)
    check_integer(cfg, "trainer.log_every_n_steps", 1)
