"""From a composed configuration (or a checkpoint's plain dicts) to the typed schema, strictly.

`load_run_config` is what a run calls before any work: every key must be one the schema knows
(OmegaConf lets `+model.n_hiden=300` in and `to_object` would drop it silently), every value
must have its field's type and lie in its range. Whatever goes wrong ends in one `ConfigError`
sentence naming the key by its dotted path, with a close match suggested for a misspelt key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any, TypeGuard, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from makemore_sweep.config.network_spec import (
    DATA_ARGUMENTS,
    MODEL,
    NetworkSpec,
    chosen_network,
    declared_keys,
    keys_schema,
    network_class,
    takes_any_key,
)
from makemore_sweep.config.rules import RULE, Rule, show
from makemore_sweep.config.schema import ANY_TYPED, UNTYPED, RunConfig, Section
from makemore_sweep.errors import ConfigError

S = TypeVar("S", bound=Section)


def load_run_config(
    cfg: DictConfig, n_train: int | None = None, import_network: bool = True
) -> RunConfig:
    """The composed configuration as a checked RunConfig; ConfigError names the first bad key.

    Called once before any work (cli/train_job.py); once the data is read, `RunConfig.batch_fits`
    checks that a batch fits in the training split.
    `logger` and `callbacks` are kept as they are (unresolved): their `_target_` constructors
    check them when they are built; `notes` is free-form.
    """
    try:
        _refuse_unknown_keys(cfg, RunConfig, "")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(RunConfig):
            if f.name == MODEL:  # typed by its network's constructor, not by this schema
                node = cfg.get(MODEL)
                plain = None if node is None else OmegaConf.to_container(node, resolve=True)
                model = typing.cast(Mapping[str, Any] | None, plain)
                if import_network:
                    values[MODEL] = network_spec(model)
                else:  # the sweep process: the keys by name only, torch left unloaded
                    check_network_keys(model)
                    values[MODEL] = model
            elif f.name in UNTYPED:
                values[f.name] = cfg.get(f.name)
            elif f.name in ANY_TYPED:
                node = cfg.get(f.name)
                # Resolved where it stands (its interpolations may point anywhere), then typed.
                plain = (
                    None
                    if node is None
                    else OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
                )
                values[f.name] = (
                    None
                    if plain is None
                    # a non-mapping fails in from_dict with a ConfigError
                    else from_dict(_schema_of(f.name, plain), typing.cast(Mapping[str, Any], plain))
                )
            elif _is_section(_field_types()[f.name]):
                values[f.name] = OmegaConf.to_object(cfg[f.name])
            else:
                values[f.name] = cfg[f.name]
        run = RunConfig(**values)
    except OmegaConfBaseException as error:
        raise config_error(error) from None
    if n_train is not None:
        run.batch_fits(n_train)
    return run


def from_dict(schema: type[S], values: Mapping[str, Any] | DictConfig) -> S:
    """A plain dict (a checkpoint's hyperparameters) or a config node as `schema`, strictly:
    an unknown key or a value of the wrong type is a ConfigError; keys left out take their defaults."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return typing.cast(S, OmegaConf.to_object(merged))
    except OmegaConfBaseException as error:
        raise config_error(error, prefix=schema.PATH, schema=schema) from None


def network_spec(values: Mapping[str, Any] | None) -> NetworkSpec:
    """`model.*` (a composed node's plain values, or a checkpoint's) as a checked NetworkSpec:
    its keys against its constructor's signature (network_spec.keys_schema)."""
    target, label, keys = chosen_network(values)
    if given := sorted(set(keys) & set(DATA_ARGUMENTS)):
        raise ConfigError(f"model.{given[0]} is given by the data: set data.{given[0]} instead.")
    cls = network_class(target)
    schema = keys_schema(cls)
    named = [f.name for f in dataclasses.fields(schema)]  # in the signature's order
    # A constructor with **kwargs takes the keys it does not name as they are written.
    extra = {k: v for k, v in keys.items() if k not in named} if takes_any_key(cls) else {}
    checked = from_dict(schema, {k: v for k, v in keys.items() if k not in extra})
    return NetworkSpec(
        target=target,
        keys={**{name: getattr(checked, name) for name in named}, **extra},
        label=label,
    )


def check_network_keys(values: Mapping[str, Any] | None) -> None:
    """`model.*` checked by name against its constructor's source, without importing it: a
    misspelt, a missing or a data key (network_spec.declared_keys); types are left to the job."""
    target, _, keys = chosen_network(values)
    if given := sorted(set(keys) & set(DATA_ARGUMENTS)):
        raise ConfigError(f"model.{given[0]} is given by the data: set data.{given[0]} instead.")
    declared = declared_keys(target)
    if declared is None:
        return
    names, required, takes_any = declared
    for key in keys:
        if key not in names and not takes_any:
            raise _unknown(f"{MODEL}.{key}", MODEL, [f"{MODEL}.{n}" for n in names], True)
    for key in required:
        if key not in keys:
            raise ConfigError(
                f"{MODEL}.{key} cannot be read (it is missing); give it a value, e.g. {MODEL}.{key}=..."
            )


def config_error(
    error: OmegaConfBaseException, prefix: str = "", schema: type[Section] | None = None
) -> ConfigError:
    """One sentence for what OmegaConf or Hydra refused: an unknown key, a wrong type, a missing
    value. `schema` is the section at `prefix` when it is not the run's (a network's keys)."""
    key = _dotted(prefix, str(error.full_key or error.key or ""))
    if isinstance(error, ConfigKeyError | ConfigAttributeError):
        return unknown_key(key, schema)
    if isinstance(error, ValidationError):
        rule = rule_of(key, schema)
        if rule is not None:
            return ConfigError(f"{key}={show(error.value)} is invalid: it must be {rule.allowed}.")
        return ConfigError(f"{key}={show(error.value)} is invalid: {_reason(error)}.")
    if isinstance(error, MissingMandatoryValue):
        return ConfigError(f"{key} cannot be read (it is missing); give it a value, e.g. {key}=...")
    return ConfigError(f"{key} cannot be read ({_reason(error)}); give it a value, e.g. {key}=...")


def unknown_key(key: str, section: type[Section] | None = None) -> ConfigError:
    """`key` is not one the schema (or `section`, its parent) has; with the closest one."""
    parent, _, _ = key.rpartition(".")
    names = [f.name for f in dataclasses.fields(section)] if section else known_keys(parent)
    return _unknown(key, parent, [_dotted(parent, name) for name in names], section is not None)


def _unknown(key: str, parent: str, known: list[str], in_section: bool) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return ConfigError(f"{key} is not a configuration key; did you mean {close[0]}?")
    if known:
        return ConfigError(
            f"{key} is not a configuration key; {parent or 'the top level'} has {', '.join(known)}."
        )
    if in_section:  # a network that takes no keys (the bigram)
        return ConfigError(f"{key} is not a configuration key; {parent} has no keys.")
    return ConfigError(f"{key} is not a configuration key.")


def known_keys(path: str) -> list[str]:
    """The keys the schema allows under dotted `path` ("" for the top level); [] when any are."""
    schemas = _schemas_at(path)
    names: dict[str, None] = {}
    for schema in schemas:
        names.update((f.name, None) for f in dataclasses.fields(schema))
    return list(names)


def rule_of(key: str, section: type[Section] | None = None) -> Rule | None:
    """The rule of the field at dotted `key`, if the schema (or `section`, its parent) gives one."""
    parent, _, name = key.rpartition(".")
    for schema in [section] if section is not None else _schemas_at(parent):
        for f in dataclasses.fields(schema):
            if f.name == name and RULE in f.metadata:
                return typing.cast(Rule, f.metadata[RULE])
    return None


def _schemas_at(path: str) -> list[type[Section]]:
    schemas: list[type[Section]] = [RunConfig]
    for part in [p for p in path.split(".") if p]:
        found: list[type[Section]] = []
        for schema in schemas:
            kind = _field_types(schema).get(part)
            if _is_section(kind):
                found.append(kind)
            elif schema is RunConfig and part in ANY_TYPED:
                options = ANY_TYPED[part]
                found.extend(options.values() if isinstance(options, dict) else [options])
        schemas = found
    return schemas


def _refuse_unknown_keys(node: DictConfig, schema: type[Section], path: str) -> None:
    allowed = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if key not in allowed:
            raise unknown_key(_dotted(path, str(key)))
    for name, kind in _field_types(schema).items():
        child = node.get(name) if _is_section(kind) and name in node else None
        if isinstance(child, DictConfig):
            _refuse_unknown_keys(child, kind, _dotted(path, name))


def _schema_of(name: str, node: Any) -> type[Section]:
    options = ANY_TYPED[name]
    if not isinstance(options, dict):
        return options
    chosen = node.get("name") if isinstance(node, DictConfig | dict) else None
    if chosen not in options:
        raise ConfigError(
            f"{name}.name={show(chosen)} is invalid: it must be one of {', '.join(options)}."
        )
    return options[chosen]


def _field_types(schema: type[Section] = RunConfig) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _is_section(kind: Any) -> TypeGuard[type[Section]]:
    return isinstance(kind, type) and issubclass(kind, Section)


def _dotted(parent: str, key: str) -> str:
    if not parent or key == parent or key.startswith(f"{parent}."):
        return key
    return f"{parent}.{key}" if key else parent


def _reason(error: OmegaConfBaseException) -> str:
    return str(error).splitlines()[0].rstrip(".") if str(error) else type(error).__name__
