"""validate_config on the real composed configuration: it rejects exactly the out-of-range values.

The allowed ranges are written out again here, independently of config_checks.py, and
hypothesis throws ints, floats (NaN and infinities too), booleans, strings and nulls at every
key: validation must raise ConfigError naming the key exactly when the value is outside its
range, and never anything else.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from makemore_sweep.config.checks import validate_config
from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.errors import ConfigError


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def integer_at_least(minimum: int, maximum: float = math.inf):
    return lambda v: is_int(v) and minimum <= v <= maximum


def real_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    return lambda v: is_real(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)


def one_of(*choices: str):
    return lambda v: v in choices


ALLOWED = {
    "seed": integer_at_least(0, 2**32 - 1),
    "target_loss": real_in(0, low_open=True),
    "divergence_loss": real_in(0, low_open=True),
    "threads": lambda v: v is None or (is_int(v) and v >= 1),
    "data.block_size": integer_at_least(1),
    "data.batch_size": integer_at_least(1),
    "data.eval_batch_size": integer_at_least(1),
    "data.split_seed": integer_at_least(0, 2**32 - 1),
    "data.download": lambda v: isinstance(v, bool),
    "model.name": one_of("mlp_bn", "mlp", "bigram"),
    "model.n_embd": integer_at_least(1),
    "model.n_hidden": integer_at_least(1),
    "model.n_layers": integer_at_least(1),
    "model.dropout": real_in(0, 1, high_open=True),
    "model.bn_momentum": real_in(0, 1),
    "optim.name": one_of("sgd", "adamw"),
    "optim.lr": real_in(0, low_open=True),
    "optim.weight_decay": real_in(0),
    "optim.momentum": real_in(0, 1, high_open=True),
    "optim.beta1": real_in(0, 1, high_open=True),
    "optim.beta2": real_in(0, 1, high_open=True),
    "optim.schedule": one_of("constant", "step", "onecycle", "cosine"),
    "optim.warmup_frac": real_in(0, 1, high_open=True),
    "optim.final_lr_frac": real_in(0, 1),
    "optim.decay_at_frac": real_in(0, 1),
    "optim.decay_factor": real_in(0, low_open=True),
    "optim.grad_clip": real_in(0),
    "trainer.max_steps": integer_at_least(1),
    "trainer.val_every_n_steps": integer_at_least(1),
    "trainer.steps_per_execution": integer_at_least(1),
    "trainer.log_every_n_steps": integer_at_least(1),
}

ANY_VALUE = st.one_of(
    st.integers(-(2**33), 2**33),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.0, 0.5, 1.0, 1.5, True, False, None, "", "abc", "sgd", "adamw", "mlp", "bigram", "cosine"]),
    st.text(max_size=8),
)


@pytest.fixture(scope="module")
def base() -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=["data.path=names.txt"])


def with_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    changed = cfg.copy()
    OmegaConf.update(changed, key, value, force_add=True)
    return changed


def test_the_default_configuration_is_valid(base: DictConfig) -> None:
    validate_config(base)
    validate_config(base, n_train=182625)


@settings(max_examples=600, deadline=None)
@given(key=st.sampled_from(sorted(ALLOWED)), value=ANY_VALUE)
def test_rejects_exactly_the_out_of_range_values(base: DictConfig, key: str, value: Any) -> None:
    cfg = with_value(base, key, value)
    if key == "model.name" and value == "bigram":
        cfg = with_value(cfg, "model.n_hidden", -1)  # sizes do not apply to the count model
    try:
        validate_config(cfg)
    except ConfigError as error:
        assert not ALLOWED[key](value), f"{key}={value!r} is allowed but was refused: {error}"
        assert str(error).startswith(f"{key}=") and "\n" not in str(error)
    else:
        assert ALLOWED[key](value), f"{key}={value!r} is out of range but was accepted"


@settings(max_examples=300, deadline=None)
@given(fractions=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4))
def test_split_fractions_must_be_three_shares_summing_to_one(base: DictConfig, fractions: list[float]) -> None:
    valid = len(fractions) == 3 and all(is_real(f) and 0 < f < 1 for f in fractions) and abs(math.fsum(fractions) - 1) <= 1e-6
    try:
        validate_config(with_value(base, "data.fractions", fractions))
    except ConfigError as error:
        assert not valid and "data.fractions" in str(error)
    else:
        assert valid


def test_max_epochs_replaces_max_steps(base: DictConfig) -> None:
    validate_config(with_value(with_value(base, "trainer.max_epochs", 2), "trainer.max_steps", None))
    with pytest.raises(ConfigError, match="trainer.max_epochs=0"):
        validate_config(with_value(base, "trainer.max_epochs", 0))


def test_batch_larger_than_the_training_split(base: DictConfig) -> None:
    with pytest.raises(ConfigError, match="at most the 100 training examples"):
        validate_config(with_value(base, "data.batch_size", 101), n_train=100)


def test_a_missing_key_is_named(base: DictConfig) -> None:
    cfg = base.copy()
    OmegaConf.set_struct(cfg, False)
    del cfg.model["n_hidden"]
    with pytest.raises(ConfigError, match=r"model.n_hidden is missing"):
        validate_config(cfg)


def test_a_mandatory_value_left_unset_is_named(base: DictConfig) -> None:
    with pytest.raises(ConfigError, match="optim.lr cannot be read"):
        validate_config(with_value(base, "optim.lr", "???"))


def test_keys_with_defaults_may_be_left_out(base: DictConfig) -> None:
    """A data or optim group written elsewhere need not spell out every optional key."""
    cfg = base.copy()
    OmegaConf.set_struct(cfg, False)
    for group, key in [("data", "fractions"), ("data", "eval_batch_size"), ("optim", "beta2"), ("model", "dropout")]:
        del cfg[group][key]
    validate_config(cfg)
