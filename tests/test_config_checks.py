"""The schema (config/schema.py) on the real composed configuration: it refuses exactly the out-of-range values.

The allowed ranges are written out again here, independently of the schema, and hypothesis throws
ints, floats (NaN and infinities too), booleans, strings and nulls at every key. A value is set
into the typed composed config as a YAML file or the command line sets it: OmegaConf first
converts what the field's type can take and refuses the rest on the spot (the conversions are
written out again below, in `as_typed`); `load_run_config` then checks the range. Either way the
outcome must be a ConfigError naming the key exactly when the converted value is out of range
or could not be converted, and nothing else.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from makemore_sweep.config.command_line import check_command_line
from makemore_sweep.config.conversion import config_error, from_dict, load_run_config, network_spec
from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.config.network_spec import (
    SHIPPED_NETWORKS,
    NetworkSpec,
    keys_schema,
    network_class,
    network_of,
)
from makemore_sweep.config.rules import RULE
from makemore_sweep.config.schema import (
    DataConfig,
    LrFindTask,
    ModuleConfig,
    OptimConfig,
    RunConfig,
    Section,
    TrainerConfig,
    TrainTask,
)
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.networks import MLPLanguageModel

MLP_KEYS = keys_schema(MLPLanguageModel)  # the shipped MLP's keys: its constructor's signature

REFUSED = object()  # what OmegaConf cannot convert to the field's type


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def integer_at_least(minimum: int, maximum: float = math.inf, nullable: bool = False):
    return lambda v: (nullable and v is None) or (is_int(v) and minimum <= v <= maximum)


def real_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    return lambda v: (
        is_real(v)
        and (v > low if low_open else v >= low)
        and (v < high if high_open else v <= high)
    )


def one_of(*choices: str):
    return lambda v: v in choices


def text(nullable: bool = False):
    return lambda v: (nullable and v is None) or (isinstance(v, str) and v.strip() != "")


def flag(v: Any) -> bool:
    return isinstance(v, bool)


# key: (type as OmegaConf converts to it, allowed range of the converted value)
ALLOWED = {
    "seed": ("int", integer_at_least(0, 2**32 - 1)),
    "target_loss": ("float", real_in(0, low_open=True)),
    "divergence_loss": ("float", real_in(0, low_open=True)),
    "threads": ("int?", integer_at_least(1, nullable=True)),
    "ckpt_path": ("str?", text(nullable=True)),
    "data.path": ("str", text()),
    "data.block_size": ("int", integer_at_least(1)),
    "data.batch_size": ("int", integer_at_least(1)),
    "data.eval_batch_size": ("int", integer_at_least(1)),
    "data.split_seed": ("int", integer_at_least(0, 2**32 - 1)),
    "data.download": ("bool", flag),
    "model.n_embd": ("int", integer_at_least(1)),
    "model.n_hidden": ("int", integer_at_least(1)),
    "model.n_layers": ("int", integer_at_least(1)),
    "model.batchnorm": ("bool", flag),
    "model.dropout": ("float", real_in(0, 1, high_open=True)),
    "model.direct": ("bool", flag),
    "model.bn_momentum": ("float", real_in(0, 1)),
    "optim.name": ("str", one_of("sgd", "adamw")),
    "optim.lr": ("float", real_in(0, low_open=True)),
    "optim.weight_decay": ("float", real_in(0)),
    "optim.momentum": ("float", real_in(0, 1, high_open=True)),
    "optim.beta1": ("float", real_in(0, 1, high_open=True)),
    "optim.beta2": ("float", real_in(0, 1, high_open=True)),
    "optim.schedule": ("str", one_of("constant", "step", "onecycle", "cosine")),
    "optim.warmup_frac": ("float", real_in(0, 1, high_open=True)),
    "optim.final_lr_frac": ("float", real_in(0, 1)),
    "optim.decay_at_frac": ("float", real_in(0, 1)),
    "optim.decay_factor": ("float", real_in(0, low_open=True)),
    "optim.grad_clip": ("float", real_in(0)),
    "trainer.max_steps": ("int?", integer_at_least(1)),  # null only with max_epochs (tested below)
    "trainer.max_epochs": ("int?", integer_at_least(1, nullable=True)),
    "trainer.val_every_n_steps": ("int", integer_at_least(1)),
    "trainer.steps_per_execution": ("int", integer_at_least(1)),
    "trainer.log_every_n_steps": ("int", integer_at_least(1)),
    # task=lr_find; the default max_lr is 10 and min_lr 1e-4, and min_lr < max_lr
    "task.min_lr": ("float", lambda v: real_in(0, low_open=True)(v) and v < 10.0),
    "task.max_lr": ("float", lambda v: real_in(0, low_open=True)(v) and v > 1e-4),
    "task.num_steps": ("int", integer_at_least(10)),
    "task.smoothing_window": ("float", real_in(0, 1, low_open=True, high_open=True)),
    "task.stop_factor": ("float", real_in(1, low_open=True)),
}


def as_typed(key: str, kind: str, v: Any) -> Any:
    """OmegaConf's conversion of `v` for the field `key` of type `kind` (`?`: Optional), or REFUSED."""
    if v == "${seed}" and key != "seed":
        v = 1337  # an interpolation is resolved, then converted (seed=${seed} would be a loop)
    if v is None:
        return None if kind.endswith("?") else REFUSED
    if isinstance(v, str) and ("${" in v or v == "???"):
        return REFUSED  # an interpolation that cannot be resolved, or a missing value
    kind = kind.rstrip("?")
    try:
        if kind == "int":
            return int(v) if type(v) in (int, str) else REFUSED  # "3" → 3; 3.0 and true refused
        if kind == "float":
            return (
                float(v) if type(v) in (int, float, str) else REFUSED
            )  # 1 → 1.0, "nan" → nan; true refused
        if kind == "bool":
            if isinstance(v, bool | int):
                return bool(v)  # 0 → false, any other integer → true
            if isinstance(v, str):
                try:
                    return int(v) != 0
                except ValueError:
                    words = {
                        "yes": True,
                        "y": True,
                        "on": True,
                        "true": True,
                        "no": False,
                        "n": False,
                        "off": False,
                        "false": False,
                    }
                    return words.get(v.lower(), REFUSED)
            return REFUSED
    except ValueError:
        return REFUSED
    assert kind == "str"
    return str(v)  # any scalar becomes its text: 5 → "5", true → "True"


ANY_VALUE = st.one_of(
    st.integers(-(2**33), 2**33),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0, 1, -1, 0.0, 0.5, 1.0, 1.5, True, False, None, "", " ", "abc", "3", "0.5", "nan", "-inf", "yes", "off",
         "sgd", "adamw", "mlp", "bigram", "cosine", "???", "${seed}", "${nosuch}"]
    ),
    st.text(max_size=8),
)  # fmt: skip


@pytest.fixture(scope="module")
def base() -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=["data.path=names.txt", "task=lr_find"])


def compose_with(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=["data.path=names.txt", *overrides])


def with_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    """`cfg` with `key` set as a YAML file would set it; OmegaConf's refusal as the CLI reports it."""
    changed = copy.deepcopy(cfg)
    try:
        OmegaConf.update(changed, key, value, force_add=True)
    except OmegaConfBaseException as error:
        raise config_error(error) from None
    return changed


def test_the_default_configuration_is_valid(base: DictConfig) -> None:
    run = load_run_config(compose_with())
    wiring = {"module": ModuleConfig(), "logger": None, "callbacks": None}  # resolved; untyped
    assert dataclasses.replace(run, **wiring) == RunConfig(
        data=DataConfig(path="names.txt"), task=TrainTask(), model=network_spec({"name": "mlp_bn"})
    )
    load_run_config(base, n_train=182625)


@settings(max_examples=800, deadline=None)
@given(key=st.sampled_from(sorted(ALLOWED)), value=ANY_VALUE)
def test_rejects_exactly_the_out_of_range_values(base: DictConfig, key: str, value: Any) -> None:
    kind, allowed = ALLOWED[key]
    typed = as_typed(key, kind, value)
    accepted = typed is not REFUSED and allowed(typed)
    try:
        cfg = with_value(base, key, value)
        run = load_run_config(cfg)
    except ConfigError as error:
        assert not accepted, f"{key}={value!r} is allowed but was refused: {error}"
        assert key in str(error) and "\n" not in str(error), str(error)
    else:
        assert accepted, f"{key}={value!r} is out of range but was accepted"
        section, _, name = key.rpartition(".")
        if section == "model":  # a network's keys: its constructor's arguments
            got = network_of(run).keys[name]
        else:
            got = getattr(getattr(run, section) if section else run, name)
        assert got == typed or (isinstance(got, float) and math.isnan(got) and math.isnan(typed))


def test_every_ranged_key_of_the_schema_is_tested_here() -> None:
    def ranged(schema: type[Section]) -> set[str]:
        return {
            schema.PATH + "." * bool(schema.PATH) + f.name
            for f in dataclasses.fields(schema)
            if RULE in f.metadata
        }

    in_schema = set().union(
        *(
            ranged(s)
            for s in (RunConfig, DataConfig, MLP_KEYS, OptimConfig, TrainerConfig, LrFindTask)
        )
    )
    assert in_schema - {"data.fractions", "task.name"} == set(
        ALLOWED
    )  # fractions: below; task.name: the group


@settings(max_examples=300, deadline=None)
@given(fractions=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4))
def test_split_fractions_must_be_three_shares_summing_to_one(
    base: DictConfig, fractions: list[float]
) -> None:
    valid = (
        len(fractions) == 3
        and all(is_real(f) and 0 < f < 1 for f in fractions)
        and abs(math.fsum(fractions) - 1) <= 1e-6
    )
    try:
        load_run_config(with_value(base, "data.fractions", fractions))
    except ConfigError as error:
        assert not valid and "data.fractions" in str(error)
    else:
        assert valid


def test_max_epochs_replaces_max_steps(base: DictConfig) -> None:
    load_run_config(
        with_value(with_value(base, "trainer.max_epochs", 2), "trainer.max_steps", None)
    )
    with pytest.raises(ConfigError, match="trainer.max_steps=None is invalid"):
        load_run_config(with_value(base, "trainer.max_steps", None))
    with pytest.raises(ConfigError, match="trainer.max_epochs=0"):
        load_run_config(with_value(base, "trainer.max_epochs", 0))


def test_batch_larger_than_the_training_split(base: DictConfig) -> None:
    with pytest.raises(ConfigError, match="at most the 100 training examples"):
        load_run_config(with_value(base, "data.batch_size", 101), n_train=100)


def test_a_mandatory_value_left_unset_is_named(base: DictConfig) -> None:
    with pytest.raises(ConfigError, match="optim.lr cannot be read"):
        load_run_config(with_value(base, "optim.lr", "???"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+model.n_hiden=300",
            "model.n_hiden is not a configuration key; did you mean model.n_hidden?",
        ),
        ("+optim.learning_rate=0.1", "optim.learning_rate is not a configuration key"),
        ("+sed=3", "sed is not a configuration key; did you mean seed?"),
        ("+trainer.foo=1", "trainer.foo is not a configuration key"),
        ("+task.min_l=0.1", "task.min_l is not a configuration key; did you mean task.min_lr?"),
        (
            "+optuna_trial.numbr=3",
            "optuna_trial.numbr is not a configuration key; did you mean optuna_trial.number?",
        ),
    ],
)
def test_unknown_keys_are_refused_even_when_added(override: str, message: str) -> None:
    cfg = compose_with("task=lr_find", override)
    with pytest.raises(ConfigError) as error:
        load_run_config(cfg)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_sweep_trial_identity_is_typed() -> None:
    cfg = compose_with(
        "+optuna_trial.number=3", "+optuna_trial.study_name=s", "+optuna_trial.base_dir=/tmp"
    )
    assert (
        load_run_config(cfg).optuna_trial.number,
        load_run_config(compose_with()).optuna_trial,
    ) == (3, None)
    with pytest.raises(ConfigError, match="optuna_trial.study_name cannot be read"):
        load_run_config(compose_with("+optuna_trial.number=3", "+optuna_trial.base_dir=/tmp"))


def test_plain_dicts_convert_strictly() -> None:
    """Checkpoints keep `model`/`optim` as plain dicts: left-out keys take the schema's defaults
    (checkpoints older than a key), unknown keys and wrong types are refused."""
    assert network_spec({"name": "mlp", "batchnorm": False}) == NetworkSpec(
        target=SHIPPED_NETWORKS["mlp"],
        keys={**network_spec(None).keys, "batchnorm": False},
        label="mlp",
    )
    with pytest.raises(
        ConfigError,
        match=r"^model.n_hiden is not a configuration key; did you mean model.n_hidden\?",
    ):
        network_spec({"n_hiden": 300})
    with pytest.raises(ConfigError, match=r"^optim.lr=abc is invalid: it must be a number > 0\.$"):
        from_dict(OptimConfig, {"lr": "abc"})


SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "model": MLP_KEYS,  # each model file is read against its own network's keys, below
    "optim": OptimConfig,
    "trainer": TrainerConfig,
}


@pytest.mark.parametrize("group", sorted(SECTIONS))
def test_group_files_carry_only_what_differs_from_the_schema(group: str) -> None:
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path)) or {}
        schema = SECTIONS[group]
        if group == "model":
            schema = keys_schema(network_class(values["_target_"]))
        defaults = {f.name: f for f in dataclasses.fields(schema)}
        for key, value in values.items():
            if key in ("defaults", "name", "_target_"):  # `name` says which option the file is
                continue
            field = defaults[key]
            default = (
                field.default_factory()
                if field.default_factory is not dataclasses.MISSING
                else field.default
            )
            assert value != default, f"{path.name}: {key}: {value} restates the schema's default"


def test_the_command_line_is_checked_before_hydra_composes(tmp_path: Path) -> None:
    """Keys in experiment files and sweeps too; what only Hydra can name is left to Hydra."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nmodel:\n  n_hiden: 3\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"^model.n_hiden is not a configuration key; did you mean model.n_hidden\?$",
    ):
        check_command_line([f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"])
    with pytest.raises(ConfigError, match=r"^model.n_hiden is not a configuration key"):
        check_command_line(["-m", "+model.n_hiden=100,200"])
    with pytest.raises(
        ConfigError, match=r"^model.n_hidden=abc is invalid: it must be an integer ≥ 1\.$"
    ):
        check_command_line(["model.n_hidden=abc"])
    check_command_line(
        [
            "-m",
            "model.n_hidden=100,200",
            "optim.lr=tag(log, interval(0.001, 0.1))",
            "sweep=beat_2p2",
        ]
    )
    with pytest.raises(
        ConfigError, match=r"^optim=nosuch is not an optimiser \(choices: adamw, sgd\)$"
    ):
        check_command_line(["optim=nosuch"])  # a missing option is one sentence too (issue 18)
    check_command_line(["--cfg", "job", "model.n_hidden=abc"])  # Hydra only prints the config


def test_model_name_is_a_label_that_still_picks_a_shipped_network() -> None:
    """`model._target_` names the network; `model.name` labels it. A config or checkpoint from
    before `_target_` names a shipped network by `name` alone, keys the bigram ignored included."""
    mlp, bigram = SHIPPED_NETWORKS["mlp_bn"], SHIPPED_NETWORKS["bigram"]
    old_bigram = {"name": "bigram", "n_embd": 10, "n_hidden": 200, "batchnorm": True}
    assert network_spec(old_bigram) == NetworkSpec(target=bigram, keys={}, label="bigram")
    # A label that names another shipped network than the class would mislead: refused.
    with pytest.raises(ConfigError, match=r"^model.name=bigram names the shipped bigram, but "):
        network_spec({"_target_": mlp, "name": "bigram"})
    wavenet = network_spec({"_target_": "makemore_sweep.model.wavenet.WaveNet", "n_hidden": 64})
    assert (wavenet.label, wavenet.keys["n_hidden"], wavenet.keys["n_embd"]) == ("WaveNet", 64, 24)
    with pytest.raises(ConfigError, match=r"^model.name=mlpbn is not a shipped network"):
        network_spec({"name": "mlpbn"})
    with pytest.raises(ConfigError, match=r"^model.n_hidden is not a configuration key; "):
        network_spec({"_target_": bigram, "name": "bigram", "n_hidden": 3})  # model=bigram's file
    with pytest.raises(ConfigError, match=r"^model.block_size is given by the data: set data"):
        network_spec({"name": "wavenet", "block_size": 8})


class Flexible(torch.nn.Module):
    """A signature users write: a None default, and **kwargs for anything else."""

    def __init__(self, vocab_size: int, block_size: int, width: int = None, **rest: float):  # noqa: RUF013
        super().__init__()


def test_a_none_default_allows_null_and_kwargs_take_any_key() -> None:
    spec = network_spec({"_target_": "test_config_checks.Flexible", "scale": 0.5})
    assert spec.keys == {"width": None, "scale": 0.5}
    assert network_spec({"_target_": "test_config_checks.Flexible", "width": "3"}).keys == {
        "width": 3
    }
