"""`model.*`: which network to build, and its keys checked against its constructor's signature.

The network contract (docs/models.md): `model._target_` names a `torch.nn.Module` class as
`module.Class`, and every other key under `model` is a keyword argument of its constructor;
the data adds `vocab_size` and `block_size`. The constructor's signature is the schema
(`keys_schema`): its annotations give the types (OmegaConf's, as for every other key), its
defaults the defaults, and an `Annotated[int, Integer(1)]` annotation (config/rules.py) a range.
So a misspelt key, a missing one or a value of the wrong type ends in the same one sentence as
any key of ours (conversion.network_spec checks them).

`model.name` is the network's label (the config group option: `model=mlp_bn`), not an argument.
A config from before `_target_` existed names a shipped network by `name` alone.

A network in the folder the command runs in (`./my_nets.py`) is found there: that folder joins
`sys.path` when a target is imported, in every process (local workers, SLURM jobs, the notebook,
makemore-sample, the report), since none of them changes the working directory.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import functools
import importlib
import importlib.util
import inspect
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from omegaconf import MISSING

from makemore_sweep.config.rules import RULE, OneOf, Rule
from makemore_sweep.config.schema import Section
from makemore_sweep.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from makemore_sweep.config.schema import RunConfig

MODEL = "model"
TARGET_KEY = "_target_"
LABEL_KEY = "name"
DATA_ARGUMENTS = ("vocab_size", "block_size")  # what the data gives every network
# The shipped networks by their `model=` option (conf/model/*.yaml): a config from before
# `_target_` (old checkpoints and experiments) names one by `name` alone.
SHIPPED_NETWORKS = {
    "mlp_bn": "makemore_sweep.model.networks.MLPLanguageModel",
    "mlp": "makemore_sweep.model.networks.MLPLanguageModel",
    "bigram": "makemore_sweep.model.networks.BigramModel",
    "wavenet": "makemore_sweep.model.wavenet.WaveNet",
    "transformer": "makemore_sweep.model.transformer.Transformer",
}
DEFAULT_NETWORK = "mlp_bn"
# Types OmegaConf checks and converts; a key of any other annotation is passed as it is written.
PLAIN_TYPES = (int, float, bool, str)
MODEL_KEY_OVERRIDE = re.compile(r"model\.[A-Za-z_]\w*=")  # no prefix: not +, ++ or ~


def force_model_keys(lines: Sequence[str]) -> list[str]:
    """`model.KEY=V` overrides as `++model.KEY=V` (Hydra's add-or-override).

    A network's keys are its constructor's, and its YAML need not list them all (the defaults are
    in the signature), so Hydra must be able to add one; network_spec then refuses a key the
    constructor does not take, with a "did you mean". Other overrides are left as they are.
    """
    return [f"++{line}" if MODEL_KEY_OVERRIDE.match(line) else line for line in lines]


def model_key_override(name: str, value: Any) -> str:
    """A sweep's override of dimension `name`, forced as above when it is a network's key."""
    return force_model_keys([f"{name}={value}"])[0]


@dataclass(frozen=True)
class NetworkSpec:
    """A network's class and its checked keyword arguments: what builds it, and what a checkpoint
    keeps to build it again anywhere."""

    target: str
    keys: dict[str, Any]
    label: str

    def network_class(self) -> type[nn.Module]:
        return network_class(self.target)

    def build(self, vocab_size: int, block_size: int) -> nn.Module:
        """The network, with the data's vocabulary and context length added to its keys."""
        cls = self.network_class()
        accepted = _parameters(cls)
        data = {"vocab_size": vocab_size, "block_size": block_size}
        data = {k: v for k, v in data.items() if takes_any_key(cls) or k in accepted}
        try:
            return cls(**data, **self.keys)
        except Exception as error:  # the user's constructor: its own refusal, in one sentence
            raise ConfigError(
                f"{self.target}({_call_text(self.keys)}) could not be built: "
                f"{type(error).__name__}: {_first_line(error)}."
            ) from error

    def as_config(self) -> dict[str, Any]:
        """`model.*` as plain values: `_target_`, the label and every key (for checkpoints)."""
        return {TARGET_KEY: self.target, LABEL_KEY: self.label, **self.keys}


def network_of(run: RunConfig) -> NetworkSpec:
    """A checked run's `model.*` (load_run_config makes it a NetworkSpec)."""
    assert isinstance(run.model, NetworkSpec), "load_run_config checks model.*"
    return run.model


def chosen_network(values: Mapping[str, Any] | None) -> tuple[str, str, dict[str, Any]]:
    """`model.*` as (the class's target, its label, its keys), the keys not yet checked."""
    values = dict(values or {})
    label = values.pop(LABEL_KEY, None)
    target = values.pop(TARGET_KEY, None)
    if target is None:
        # From before `_target_` (old checkpoints and experiments): `name` picks a shipped
        # network, and the MLP's keys are left out where the bigram ignored them then.
        name = label or DEFAULT_NETWORK
        if name not in SHIPPED_NETWORKS:
            raise ConfigError(
                f"model.name={name} is not a shipped network ({', '.join(SHIPPED_NETWORKS)}); "
                "name your own network's class with model._target_=module.Class."
            )
        target = SHIPPED_NETWORKS[name]
        takes = set(_parameters(network_class(target)))
        ignored = set(_parameters(network_class(SHIPPED_NETWORKS[DEFAULT_NETWORK]))) - takes
        values = {k: v for k, v in values.items() if k not in ignored}
    if not isinstance(target, str):
        raise ConfigError(f"model._target_={target} is invalid: it must be module.Class.")
    if label in SHIPPED_NETWORKS and SHIPPED_NETWORKS[label] != target:
        # `model.name=transformer` once picked a network: now a label, it must not mislead.
        raise ConfigError(
            f"model.name={label} names the shipped {label}, but model._target_ is {target}; "
            f"pick a network with model={label} (model.name is only its label)."
        )
    return target, str(label or target.rpartition(".")[2]), values


def declared_keys(target: str) -> tuple[list[str], list[str], bool] | None:
    """The constructor's keyword names, those without a default, and whether it takes **kwargs,
    read from its module's source without running it: the sweep process checks a sweep's keys
    this way and stays free of torch (each trial's job checks the types). None where the source
    does not say (a compiled module, a constructor inherited from a base class)."""
    module_name, _, class_name = target.rpartition(".")
    _find_user_code()
    try:
        found = importlib.util.find_spec(module_name) if module_name else None
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(
            f"model._target_={target} cannot be imported: there is no module {module_name} "
            f"here ({Path.cwd()}) or installed."
        )
    if not found.origin or not found.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(found.origin).read_text(encoding="utf-8"))
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    inits = [
        n
        for c in classes
        for n in c.body
        if isinstance(n, ast.FunctionDef) and n.name == "__init__"
    ]
    if not inits:
        return None
    arguments = inits[0].args
    positional = [*arguments.posonlyargs, *arguments.args][1:]  # not self
    first_default = len(positional) - len(arguments.defaults)
    names = [a.arg for a in [*positional, *arguments.kwonlyargs]]
    required = [a.arg for i, a in enumerate(positional) if i < first_default] + [
        a.arg for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d is None
    ]
    data = set(DATA_ARGUMENTS)
    return (
        [n for n in names if n not in data],
        [n for n in required if n not in data],
        bool(arguments.kwarg),
    )


def network_class(target: str) -> type[nn.Module]:
    """The class `target` names (`module.Class`), found in the folder the command runs in too."""
    from torch import nn

    module_name, _, class_name = target.rpartition(".")
    if not module_name or not class_name:
        raise ConfigError(f"model._target_={target} is invalid: it must be module.Class.")
    _find_user_code()
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        missing = isinstance(error, ModuleNotFoundError) and error.name == module_name
        reason = (
            f"there is no module {module_name} here ({Path.cwd()}) or installed"
            if missing
            else f"importing {module_name} raised {type(error).__name__}: {_first_line(error)}"
        )
        raise ConfigError(f"model._target_={target} cannot be imported: {reason}.") from error
    cls = getattr(module, class_name, None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type)]
        close = difflib.get_close_matches(class_name, names, n=1)
        hint = f"; did you mean {module_name}.{close[0]}?" if close else "."
        raise ConfigError(
            f"model._target_={target} cannot be imported: {module_name} has no {class_name}{hint}"
        )
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"model._target_={target} is not a network: it must name a torch.nn.Module class."
        )
    return cls


def keys_schema(cls: type[nn.Module]) -> type[Section]:
    """The constructor's keyword arguments as a `model` section: types, defaults and rules."""
    hints = _hints(cls)
    fields: list[tuple[str, Any, Any]] = []
    for name, parameter in _parameters(cls).items():
        if name in DATA_ARGUMENTS or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        kind, rule = _kind_and_rule(hints.get(name, Any))
        default = MISSING if parameter.default is parameter.empty else parameter.default
        if default is None and kind is not Any:
            kind = typing.Optional[kind]  # noqa: UP045 - OmegaConf reads typing's Optional
        metadata = {RULE: rule} if rule is not None else {}
        if isinstance(default, list | dict):
            factory = functools.partial(copy.deepcopy, default)  # a fresh list per config
            fields.append((name, kind, field(default_factory=factory, metadata=metadata)))
        else:
            fields.append((name, kind, field(default=default, metadata=metadata)))
    return dataclasses.make_dataclass(
        f"{cls.__name__}Keys", fields, bases=(Section,), namespace={"PATH": MODEL}
    )


def takes_any_key(cls: type) -> bool:
    """A constructor with **kwargs: keys beyond its named ones are passed on as written."""
    return any(p.kind is p.VAR_KEYWORD for p in _parameters(cls).values())


def _find_user_code() -> None:
    """Put the folder the command runs in on sys.path, as `python -m` and notebooks do."""
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)  # the constructor's, without self


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__, include_extras=True)  # type: ignore[misc]
    except (NameError, TypeError, AttributeError):  # an annotation that does not resolve:
        # its keys are passed as written
        return {}


def _kind_and_rule(annotation: Any) -> tuple[Any, Rule | None]:
    """The OmegaConf type of an annotation, and the rule it carries (Annotated or Literal)."""
    rule: Rule | None = None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        rule = next((e for e in extras if isinstance(e, Rule)), None)
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        if all(isinstance(c, str) for c in choices):
            return str, rule or OneOf(tuple(choices))
        return Any, rule
    return (annotation if _omegaconf_checks(annotation) else Any), rule


def _omegaconf_checks(annotation: Any) -> bool:
    if annotation in PLAIN_TYPES:
        return True
    origin = typing.get_origin(annotation)
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):  # Optional[int], int | None
        return len(arguments) == 1 and arguments[0] in PLAIN_TYPES
    if origin is list:
        return len(arguments) == 1 and arguments[0] in PLAIN_TYPES
    return False


def _call_text(keys: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in keys.items())


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0].rstrip(".") or "no message"
