"""Checking makemore-train's command line before `@hydra.main` takes over.

Hydra reports a refusal in several lines, exit code 1, at times with wrong advice (`To append to
your config use +hydra.sweeper.n_trails=1`). So the entry point first parses and composes
conf/train.yaml, hydra node included, with the same overrides (Hydra's public parser and compose
API), and turns a refusal into the one sentence of a `ConfigError`: bad syntax; an unknown group
option among those Hydra finds (the user's ./configs too), with a "did you mean"; a bad key or
value, `hydra.*` ones by the chosen sweeper's and launcher's own schemas; a sweep in a single run
or over a `hydra.*` setting. A sweep of a task key is checked with its first value, an interval
not at all (each job checks its own values); `--cfg` only syntax and group options. With
MAKEMORE_DEBUG=1 Hydra's own exception is the sentence's cause, so the traceback shows it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, open_dict, read_write
from omegaconf import errors as omegaconf_errors

import makemore_sweep.config.store  # noqa: F401  (registers the schema)
from makemore_sweep.compat.hydra import parse_hydra_command_line
from makemore_sweep.config.conversion import config_error, load_run_config
from makemore_sweep.config.locations import CONFIG_PACKAGE, PRIMARY_CONFIG
from makemore_sweep.config.network_spec import force_model_keys
from makemore_sweep.config.rules import show
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.errors import ConfigError, debug_enabled

# Flags after which Hydra does not compose our task's config (help, --info...) or reads another.
NOT_A_PLAIN_RUN = (
    "help", "hydra_help", "info", "shell_completion", "config_path", "config_name", "config_dir",
    "experimental_rerun",
)  # fmt: skip
# What an option of each group is, for "sweep=beat2p2 is not a sweep".
GROUP_NOUNS = {
    "sweep": "a sweep", "experiment": "an experiment", "model": "a model", "optim": "an optimiser",
    "logger": "a logger", "task": "a task", "data": "a data config", "trainer": "a trainer config",
    "callbacks": "a callbacks config", "hydra/launcher": "a launcher", "hydra/sweeper": "a sweeper",
}  # fmt: skip
# The typed bases of group options (config/store.py, `task/train_schema`): valid, never suggested.
SCHEMA_SUFFIX = "_schema"
# What OmegaConf could not convert a value of a typed hydra.* field to, in a user's words.
CONVERSIONS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}
# The hydra.* nodes whose keys are those of the option chosen in a group.
CHOSEN_NODES = {"hydra.sweeper": "hydra/sweeper", "hydra.launcher": "hydra/launcher"}
LEXER = "LexerNoViableAltException: "  # Hydra's message for a character it cannot read
OmegaConfBaseException = omegaconf_errors.OmegaConfBaseException
COMPOSE_ERRORS = (HydraException, OmegaConfBaseException, ValueError)  # ValueError: a group's value
KEY_ERRORS = (omegaconf_errors.ConfigKeyError, omegaconf_errors.ConfigAttributeError)
# Launchers whose jobs run on this machine, where the command line is typed.
LOCAL_LAUNCHERS = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "makemore_sweep.cluster.local_launcher.ThreadSplittingLocalLauncher",
)
SEARCHPATH = "hydra.searchpath"  # may add folders of options; Hydra reads it from the command line


@dataclass(frozen=True)
class CheckedRun:
    """The checked configuration of the command line's run (of a multirun: its first job)."""

    run: RunConfig
    # Its jobs run on this machine with the names file it names: a single run, or a multirun
    # whose launcher runs its jobs here and that sweeps no `data.*` key (cli/train.py checks the
    # file then, before the training stack loads; a cluster's jobs may see other files).
    data_is_here: bool


def check_command_line(args: list[str]) -> CheckedRun | None:
    """Raise ConfigError when the command line's overrides give an invalid configuration; None
    when it asks for no run (help, --cfg and the like)."""
    parsed = parse_hydra_command_line(args)
    if parsed is None or any(getattr(parsed, flag, None) for flag in NOT_A_PLAIN_RUN):
        return None
    overrides = [parse_override(line) for line in parsed.overrides]
    # The same config module and search path (the user's ./configs first) as makemore-train.
    with initialize_config_module(config_module=CONFIG_PACKAGE, job_name="train"):
        groups = ConfigGroups(overrides)
        if parsed.cfg:  # --cfg prints the config: values are not checked, but options must exist
            if (misnamed := groups.misnamed_option(overrides, sweeps_only=False)) is not None:
                raise misnamed
            return None
        multirun = runs_multirun(parsed.multirun, overrides)
        refuse_sweeps_hydra_cannot_run(overrides, multirun)
        # Composed as makemore-train passes them to Hydra: a network's keys forced (++).
        plain = force_model_keys(plain_overrides(overrides))
        try:
            cfg = compose(config_name=PRIMARY_CONFIG, overrides=plain, return_hydra_config=True)
        except COMPOSE_ERRORS as error:
            refusal = FailedComposition(overrides, plain, groups).refusal(error)
            raise refusal from (error if debug_enabled() else None)
        if (misnamed := groups.misnamed_option(overrides, sweeps_only=True)) is not None:
            raise misnamed  # a value after the first of a multirun's sweep
    launcher = str(cfg.hydra.launcher.get("_target_"))
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]  # load_run_config checks the task's schema
    # A sweep process only composes and launches: it checks the network's keys by name, without
    # loading torch; each trial's job builds its network and checks the rest.
    run = load_run_config(cfg, import_network=not multirun)
    sweeps_data = any(
        o.is_sweep_override() and o.key_or_group.startswith("data.") for o in overrides
    )
    return CheckedRun(run, not multirun or (launcher in LOCAL_LAUNCHERS and not sweeps_data))


def parse_override(line: str) -> Override:
    """One override as Hydra parses it; a syntax error as one sentence naming the override."""
    try:
        return OverridesParser.create().parse_overrides([line])[0]
    except OverrideParseException as error:
        refusal = ConfigError(syntax_error(line, error.message))
        raise refusal from (error if debug_enabled() else None)


def syntax_error(line: str, message: str) -> str:
    """Hydra's parser message (what it expected, a pointer to the grammar) as one sentence."""
    reasons, see = [], "https://hydra.cc/docs/advanced/override_grammar/basic/"
    lines = message.splitlines()
    for i, text in enumerate(lines):
        text = text.strip()
        if text.startswith("See "):
            see = text.split()[1]
        elif text.startswith(LEXER) and "^" in (caret := (lines + [""])[i + 1]):
            at = caret.index("^") - len(LEXER)  # the caret points into the line after LEXER
            reasons.append(f"it cannot read {line[at : at + 1]!r} at character {at + 1}")
        elif text and not text.startswith(("Error when parsing", "Error parsing override", "^")):
            reasons.append(text.rstrip("."))
    reason = "; ".join(reasons) or "Hydra cannot read it"
    return f"{line} cannot be parsed: {reason}; see {see} for the override syntax."


def runs_multirun(multirun_flag: bool, overrides: list[Override]) -> bool:
    """Whether Hydra will run a multirun: -m, or hydra.mode=MULTIRUN (as `sweep=NAME` adds)."""
    modes = [str(o.value()).upper() for o in overrides if o.key_or_group == "hydra.mode"]
    return multirun_flag or modes[-1:] == ["MULTIRUN"]


def refuse_sweeps_hydra_cannot_run(overrides: list[Override], multirun: bool) -> None:
    for override in overrides:
        line = override.input_line
        if not override.is_sweep_override():
            continue
        if override.is_hydra_override():
            raise ConfigError(f"{line}: Hydra cannot sweep over its own settings; give one value.")
        if not multirun:
            also = ""
            if override.value_type == ValueType.SIMPLE_CHOICE_SWEEP:
                k, _, v = str(line).partition("=")
                also = f"; a list is written {k}=[{v}], a text with commas quoted: {k}='{v}'"
            raise ConfigError(f"{line} is a sweep, which runs only with -m (--multirun){also}.")


def plain_overrides(overrides: list[Override]) -> list[str]:
    """The overrides to compose with: a sweep's list or range by its first value (that checks the
    key), an interval or glob sweep left out."""
    plain = []
    for override in overrides:
        line = str(override.input_line)
        if override.is_sweep_override():
            try:  # choice and range sweeps can be listed; intervals and globs cannot
                first = next(iter(override.sweep_string_iterator()))
                line = f"{override.get_key_element()}={first}"
            except (HydraException, StopIteration):
                continue
        plain.append(line)
    return plain


class ConfigGroups:
    """Hydra's config groups and their options, on the search path the command line gives."""

    def __init__(self, overrides: list[Override]) -> None:
        self.loader = GlobalHydra.instance().config_loader()
        self.searchpath = [str(o.input_line) for o in overrides if o.key_or_group == SEARCHPATH]
        self.cache: dict[tuple[str, ObjectType], list[str]] = {}

    def options(self, group: str, kind: ObjectType = ObjectType.CONFIG) -> list[str]:
        if (group, kind) not in self.cache:
            self.cache[group, kind] = self.loader.get_group_options(
                group, results_filter=kind, config_name=PRIMARY_CONFIG, overrides=self.searchpath
            )
        return self.cache[group, kind]

    def selects(self, override: Override) -> bool:
        """Whether the override chooses an option of a config group (as Hydra decides it)."""
        parent, _, leaf = override.key_or_group.rpartition("/")
        return not override.is_value_path and leaf in self.options(parent, ObjectType.GROUP)

    def misnamed_option(self, overrides: list[Override], sweeps_only: bool) -> ConfigError | None:
        for override in overrides:
            if override.is_delete() or (sweeps_only and not override.is_sweep_override()):
                continue
            if not self.selects(override):
                continue
            for value in option_values(override):
                folder, _, name = value.rpartition("/")  # experiment=folder/name
                group = "/".join(filter(None, (override.key_or_group, folder)))
                if name not in self.options(group):
                    return self.unknown_option(override, value)
        return None

    def unknown_option(self, override: Override, value: str) -> ConfigError:
        group = override.key_or_group
        choices = sorted(o for o in self.options(group) if not o.endswith(SCHEMA_SUFFIX))
        close = difflib.get_close_matches(value, choices, n=1)
        noun = GROUP_NOUNS.get(group, f"an option of {group}")
        hint = f"; did you mean {close[0]}?" if close else ""
        listed = f" (choices: {', '.join(choices)})" if choices else f" ({group} has no options)"
        return ConfigError(f"{override.get_key_element()}={value} is not {noun}{hint}{listed}")


def option_values(override: Override) -> list[str]:
    """The option names an override of a group chooses: one, a list, or each value of a sweep."""
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return []  # a glob picks among the existing options only
    try:
        sweep = override.is_sweep_override()
        value = list(override.sweep_string_iterator()) if sweep else override.value()
    except HydraException:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v not in (None, "null")]


class FailedComposition:
    """Why Hydra could not compose the command line's configuration, in one sentence."""

    def __init__(self, overrides: list[Override], plain: list[str], groups: ConfigGroups) -> None:
        self.overrides, self.plain, self.groups = overrides, plain, groups

    def refusal(self, error: Exception) -> ConfigError:
        refusal = self.groups.misnamed_option(self.overrides, sweeps_only=False)
        for override in self.overrides:
            refusal = refusal or self.misplaced_choice(override)
        if refusal is not None:
            return refusal
        omegaconf = omegaconf_refusal(error)
        if omegaconf is not None:
            key = str(omegaconf.full_key or "")
            hydra_key = key.startswith("hydra.")
            return self.hydra_key_error(omegaconf, key) if hydra_key else config_error(omegaconf)
        # Anything else: Hydra's first line, its sentences joined into one.
        lines = [text.strip() for text in str(error).splitlines() if text.strip()]
        first = lines[0].rstrip(".") if lines else type(error).__name__
        return ConfigError(re.sub(r"\. (\w)", lambda m: f"; {m.group(1).lower()}", first) + ".")

    def misplaced_choice(self, override: Override) -> ConfigError | None:
        """`++group=x`, `+group=x` where the defaults list has the group, `~group=x` not chosen."""
        placing = (OverrideType.ADD, OverrideType.FORCE_ADD, OverrideType.DEL)
        if override.type not in placing or not self.groups.selects(override):
            return None
        line, group = override.input_line, override.key_or_group
        value = ",".join(option_values(override))
        if override.is_force_add():
            return ConfigError(f"{line} cannot force-add a config group; write {group}={value}.")
        without = self.compose_without(str(line))
        if without is None or group not in without.hydra.runtime.choices:
            return None
        chosen = without.hydra.runtime.choices[group]
        if override.is_add():
            return ConfigError(
                f"{line} adds {group}, which the defaults list has already; "
                f"drop the + to choose it: {group}={value}."
            )
        if value and value != chosen:
            return ConfigError(f"{line} cannot delete {group}={value}: the {group} is {chosen}.")
        return None

    def hydra_key_error(self, refusal: OmegaConfBaseException, key: str) -> ConfigError:
        """A hydra.* key or value that the chosen sweeper, launcher or Hydra itself refuses."""
        if isinstance(refusal, omegaconf_errors.ValidationError):
            converted = re.search(r"could not be converted to (\w+)", str(refusal))
            expected = re.search(r"expected one of \[(.*)\]", str(refusal))
            allowed = CONVERSIONS.get(converted.group(1)) if converted else None
            allowed = allowed or (f"one of {expected.group(1)}" if expected else None)
            if allowed:
                return ConfigError(f"{key}={show(refusal.value)} is invalid: it must be {allowed}.")
        if not isinstance(refusal, KEY_ERRORS):
            return config_error(refusal)
        parent, _, name = key.rpartition(".")
        node = refusal.parent_node  # the node that has no such key
        keys = node if isinstance(node, DictConfig) else []
        known = [str(k) for k in keys if not str(k).startswith("_")]  # not _target_
        chosen = None
        if parent in CHOSEN_NODES:  # which sweeper or launcher the rest of the command line chooses
            culprit = next((o.input_line for o in self.overrides if o.key_or_group == key), None)
            without = self.compose_without(culprit)
            chosen = without.hydra.runtime.choices.get(CHOSEN_NODES[parent]) if without else None
        where = f"{parent} (the {chosen} {parent.split('.')[1]})" if chosen else parent
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            return ConfigError(f"{key} is not a key of {where}; did you mean {parent}.{close[0]}?")
        also = ""
        if chosen == "basic" and parent == "hydra.sweeper":
            sweeps = ", ".join(self.groups.options("sweep"))
            also = f"; a sweep brings its own sweeper: add sweep=NAME ({sweeps})"
        elif chosen == "basic":
            others = [o for o in self.groups.options("hydra/launcher") if o != "basic"]
            also = f"; choose a launcher first: hydra/launcher=NAME ({', '.join(others)})"
        has = f"which has {', '.join(known)}" if known else "which has no keys"
        return ConfigError(f"{key} is not a key of {where}, {has}{also}.")

    def compose_without(self, culprit: str | None) -> DictConfig | None:
        """The configuration (hydra node included) the command line gives without `culprit`."""
        try:
            rest = [o for o in self.plain if o != culprit]
            return compose(config_name=PRIMARY_CONFIG, overrides=rest, return_hydra_config=True)
        except COMPOSE_ERRORS:
            return None


def omegaconf_refusal(error: BaseException) -> OmegaConfBaseException | None:
    """What OmegaConf refused under Hydra's composition error: an override (its cause) or a
    config file merged into a typed node (the error being handled when Hydra raised)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OmegaConfBaseException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
