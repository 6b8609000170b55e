"""Checking configuration values before any work, with messages that name the key."""

from __future__ import annotations

from omegaconf import DictConfig

from makemore_sweep.errors import ConfigError
from makemore_sweep.module import OPTIMIZER_NAMES
from makemore_sweep.networks import NETWORK_NAMES
from makemore_sweep.schedules import SCHEDULE_NAMES


def _require(condition: bool, key: str, value: object, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value} is invalid: it must be {allowed}.")


def validate_config(cfg: DictConfig, n_train: int | None = None) -> None:
    """Raise ConfigError naming the first key whose value is out of range."""
    data, model, optim, trainer = cfg.data, cfg.model, cfg.optim, cfg.trainer
    _require(data.block_size >= 1, "data.block_size", data.block_size, "an integer ≥ 1")
    _require(data.batch_size >= 1, "data.batch_size", data.batch_size, "an integer ≥ 1")
    if n_train is not None:
        _require(
            data.batch_size <= n_train,
            "data.batch_size",
            data.batch_size,
            f"at most the {n_train} training examples",
        )
    _require(model.name in NETWORK_NAMES, "model.name", model.name, f"one of {', '.join(NETWORK_NAMES)}")
    if model.name != "bigram":
        for key in ("n_embd", "n_hidden", "n_layers"):
            _require(model[key] >= 1, f"model.{key}", model[key], "an integer ≥ 1")
        _require(0.0 <= model.get("dropout", 0.0) < 1.0, "model.dropout", model.get("dropout"), "in [0, 1)")
    _require(optim.name in OPTIMIZER_NAMES, "optim.name", optim.name, f"one of {', '.join(OPTIMIZER_NAMES)}")
    _require(optim.lr > 0, "optim.lr", optim.lr, "a number > 0")
    _require(optim.weight_decay >= 0, "optim.weight_decay", optim.weight_decay, "a number ≥ 0")
    _require(optim.schedule in SCHEDULE_NAMES, "optim.schedule", optim.schedule, f"one of {', '.join(SCHEDULE_NAMES)}")
    _require(0.0 <= optim.warmup_frac < 1.0, "optim.warmup_frac", optim.warmup_frac, "in [0, 1)")
    if trainer.get("max_epochs") is None:
        _require(trainer.max_steps >= 1, "trainer.max_steps", trainer.max_steps, "an integer ≥ 1")
    else:
        _require(trainer.max_epochs >= 1, "trainer.max_epochs", trainer.max_epochs, "an integer ≥ 1 (or null)")
    _require(trainer.val_every_n_steps >= 1, "trainer.val_every_n_steps", trainer.val_every_n_steps, "an integer ≥ 1")
    _require(
        trainer.steps_per_execution >= 1,
        "trainer.steps_per_execution",
        trainer.steps_per_execution,
        "an integer ≥ 1",
    )
