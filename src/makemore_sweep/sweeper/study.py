"""The study: what its trials search (the space), how it samples and prunes, opening it, counting it.

Runs in every process of a sweep: the sweep process creates or loads the study (`open_study`),
each worker loads it with a sampler of its own (`load_worker_study`), and each trial's run
builds the same pruner to ask whether to stop (`trial_hook.py`). The storage under it is
`storage.py`'s.

The search space comes from `hydra.sweeper.params` and sweep overrides, read with Hydra's public
override parser, so the syntax is Hydra's sweep syntax:

| you write                            | Optuna distribution                          |
|--------------------------------------|----------------------------------------------|
| `int(interval(8, 32))`               | IntDistribution(8, 32)                       |
| `interval(0.0, 0.3)`                 | FloatDistribution(0.0, 0.3)                  |
| `tag(log, interval(0.001, 0.03))`    | FloatDistribution(0.001, 0.03, log=True)     |
| `range(64, 1025, step=64)`           | IntDistribution(64, 1024, step=64)           |
| `choice(128, 256, 512)`              | CategoricalDistribution((128, 256, 512))     |
| `0.01` (no sweep)                    | a fixed value, passed to every trial          |

Deletions (`~key`) are passed to every trial as they are.

Pruners: Wilcoxon (`optuna.pruners.WilcoxonPruner`) is left out on purpose: it is made for an
objective that is the mean of per-instance scores (k folds, a set of problems), each step one
instance, and pairs a trial's steps with the best trial's. Our steps are points of one learning
curve and the objective is its last point, not the mean of its points: a fast starter would look
better than a slow one that ends lower. `patient` (a median pruner that waits for a plateau)
stands in for it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from math import ceil
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    FloatRange,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from makemore_sweep.config.network_spec import model_key_override
from makemore_sweep.config.sweep_settings import SweepSettings, directions
from makemore_sweep.errors import ConfigError, StorageError

# --- the search space -----------------------------------------------------------------------------

Extender = Callable[[DictConfig, optuna.Trial], None]


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna samples, what every trial gets as it is, and an optional user extender."""

    distributions: dict[str, BaseDistribution]
    fixed_params: dict[str, Any] = field(default_factory=dict)
    fixed_overrides: list[str] = field(default_factory=list)
    # The function `hydra.sweeper.custom_search_space` names: kept by name, which pickles to the
    # worker processes (Hydra's partial of it does not), and built where a trial is asked for.
    custom_search_space: str | None = None

    def suggest(self, study: optuna.Study, config: DictConfig) -> optuna.Trial:
        """Ask the study for a new trial with every parameter of the space sampled."""
        trial = study.ask(fixed_distributions=self.distributions)
        for name, value in self.fixed_params.items():
            trial.set_user_attr(name, value)
        if self.custom_search_space:
            extender(self.custom_search_space)(config, trial)
        return trial

    def trial_overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The Hydra overrides of a trial with these sampled `params`."""
        values = {**params, **self.fixed_params}
        return [*(model_key_override(name, v) for name, v in values.items()), *self.fixed_overrides]

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every dimension, for Optuna's GridSampler (discrete spaces only)."""
        return {name: grid_choices(name, d) for name, d in self.distributions.items()}


def build_search_space(
    params: Mapping[str, Any] | None,
    arguments: Sequence[str],
    custom_search_space: str | None = None,
) -> SearchSpace:
    """The space of `hydra.sweeper.params` with the command line's sweep `arguments` on top."""
    lines = [*(f"{key}={value}" for key, value in (params or {}).items()), *arguments]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as error:
        raise ConfigError(f"hydra.sweeper.params are invalid: {_first_line(error)}.") from None
    distributions: dict[str, BaseDistribution] = {}
    fixed_params: dict[str, Any] = {}
    fixed_overrides: list[str] = []
    for override in parsed:
        if override.is_delete():
            fixed_overrides.append(str(override.input_line))
            continue
        # A network's key comes forced (`++model.KEY`, cli/train.py); its dimension is model.KEY.
        name = (
            override.key_or_group
            if override.is_force_add() and override.key_or_group.startswith("model.")
            else override.get_key_element()
        )
        try:
            value = distribution_from_override(override)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"hydra.sweeper.params.{name} is invalid: {error}.") from None
        # A later line for the same key wins, whether it searches or fixes the value.
        distributions.pop(name, None)
        fixed_params.pop(name, None)
        if isinstance(value, BaseDistribution):
            distributions[name] = value
        else:
            fixed_params[name] = value
    if custom_search_space:
        extender(custom_search_space)  # refused now, in the sweep process, if it cannot be found
    return SearchSpace(distributions, fixed_params, fixed_overrides, custom_search_space)


@functools.cache
def extender(name: str) -> Extender:
    """The extender `name` names: the user named it in hydra.sweeper.custom_search_space, so
    that one may run (Hydra's execution whitelist)."""
    built: Extender = instantiate(
        {"_target_": name, "_partial_": True}, _execution_whitelist_=(name,)
    )
    return built


def distribution_from_override(override: Override) -> BaseDistribution | str:
    """The Optuna distribution of one sweep override, or its value as text when it does not sweep."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(_encoded(override))
    if isinstance(value, RangeSweep):
        return _range_distribution(override, value)
    if isinstance(value, IntervalSweep):
        if value.start is None or value.end is None:
            raise ValueError("an interval needs both ends")
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(
        f"{override.input_line} is not a sweep Optuna can sample (use choice, range or interval)"
    )


def _range_distribution(override: Override, value: RangeSweep) -> BaseDistribution:
    """Hydra's `range(start, stop, step)` (stop exclusive) as an Optuna distribution (both ends included)."""
    if value.step == 0:
        raise ValueError("a range needs a nonzero step")
    if value.shuffle or value.transformers:
        return CategoricalDistribution(_encoded(override))
    values = value.range()
    if isinstance(values, range):
        if not values:
            raise ValueError("the range holds no value")
        low, high = sorted((values[0], values[-1]))
        return IntDistribution(low, high, step=abs(values.step))
    start, stop, step = Decimal(values.start), Decimal(values.stop), Decimal(values.step)
    count = ceil((Fraction(stop) - Fraction(start)) / Fraction(step))
    if count <= 0:
        raise ValueError("the range holds no value")
    last = start + (count - 1) * step
    lowest, highest = sorted((float(start), float(last)))
    if Decimal(str(lowest)) != min(start, last) or Decimal(str(float(abs(step)))) != abs(step):
        # Not exact in binary floating point: keep Hydra's own values as choices.
        return CategoricalDistribution(_encoded(override))
    return FloatDistribution(lowest, highest, step=float(abs(step)))


def _encoded(override: Override) -> list[CategoricalChoiceType]:
    choices: list[CategoricalChoiceType] = []
    for choice in override.sweep_iterator(transformer=Transformer.encode):
        if not isinstance(choice, (str, int, float, bool, type(None))):
            raise TypeError(
                f"a choice must be a str, int, float, bool or null, not {type(choice).__name__}"
            )
        choices.append(choice)
    return choices


def grid_choices(name: str, distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        choices = list(FloatRange(distribution.low, distribution.high, distribution.step))
        if not choices or choices[-1] != distribution.high:
            choices.append(distribution.high)
        return choices
    raise ConfigError(
        f"hydra.sweeper.params.{name} is continuous; the grid sampler needs choice(...), range(...) or int(interval(...))."
    )


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Optuna's public suggest_* call for one distribution."""
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"cannot sample {name}: {type(distribution).__name__} is not supported")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__).rstrip(".")


# --- the pruner -----------------------------------------------------------------------------------

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "patient": optuna.pruners.PatientPruner,
    "none": optuna.pruners.NopPruner,
}
# PatientPruner's own options; the rest of `pruner_options.patient` goes to the MedianPruner it wraps.
PATIENT_KEYS = ("patience", "min_delta")


def _patient(**options: Any) -> optuna.pruners.PatientPruner:
    """A median pruner that waits: a trial below the median is stopped only once its dev loss
    has not improved for `patience` validations. One flat mapping (not a nested `wrapped:`)
    keeps the option overridable as `pruner_options.patient.patience=3` from the command line."""
    own = {key: options.pop(key) for key in PATIENT_KEYS if key in options}
    if "patience" not in own:
        raise TypeError(
            "it needs patience (validations without improvement before a trial may be pruned)"
        )
    wrapped = optuna.pruners.MedianPruner(**options)
    # Optuna marks PatientPruner experimental; every trial process builds it, so the warning
    # would fill every trial's log with the same line.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(wrapped, **own)


def build_pruner(
    name: str | None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> optuna.pruners.BasePruner:
    """`name` is a key of PRUNERS; `options[name]` are the Optuna pruner's keyword arguments."""
    key = "none" if name is None else str(name).lower()
    if key not in PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner={name} is invalid: it must be one of {', '.join(PRUNERS)}."
        )
    kwargs = dict((options or {}).get(key) or {})
    build: Callable[..., optuna.pruners.BasePruner] = _patient if key == "patient" else PRUNERS[key]
    try:
        return build(**dict(kwargs))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"hydra.sweeper.pruner_options.{key}={kwargs} is invalid: {error}."
        ) from error


# --- the sampler ----------------------------------------------------------------------------------

SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
TPE_TARGET = "optuna.samplers.TPESampler"
GRID_TARGET = "optuna.samplers.GridSampler"
# Seeds of the workers' samplers are this far apart, so no two workers draw the same proposals.
WORKER_SEED_STRIDE = 100_003


def build_sampler(sampler_config: Any, *, seed_offset: int, parallel: bool) -> Any:
    """The configured sampler; its seed moves on by `seed_offset` (trials so far, and the worker).

    A resumed study would otherwise replay its first proposals, and workers would all propose
    the same points. With trials in flight in parallel, TPE lies about the running ones
    (`constant_liar`) so that it does not propose one point several times. A grid sampler is
    returned as a partial: it still needs the grid of the search space.
    """
    config = (
        OmegaConf.to_container(sampler_config, resolve=True)
        if OmegaConf.is_config(sampler_config)
        else dict(sampler_config)
    )
    assert isinstance(config, dict)
    if config.get("seed") is not None:
        config["seed"] = int(config["seed"]) + seed_offset
    if config.get("_target_") == TPE_TARGET and parallel:
        config["constant_liar"] = True
    return instantiate(config, _execution_whitelist_=SAMPLER_WHITELIST)


def is_grid(sampler_config: Any) -> bool:
    return str(sampler_config.get("_target_")) == GRID_TARGET


# --- the study ------------------------------------------------------------------------------------


def study_name(settings: SweepSettings, config: DictConfig) -> str:
    if settings.study_name:
        return str(settings.study_name)
    return str(config.hydra.runtime.choices.get("sweep") or "makemore")


def open_study(
    name: str, storage: BaseStorage, sampler: optuna.samplers.BaseSampler, settings: SweepSettings
) -> optuna.Study:
    """Create the study, or load it when it exists with the same objectives and directions."""
    wanted = directions(settings.direction)
    # Optuna's "A new study created" / "Using an existing study" says less than the plan line
    # printed next, and would stand on stderr beside a refusal's one sentence.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=build_pruner(settings.pruner, settings.pruner_options),
            directions=wanted,  # type: ignore[arg-type]
            load_if_exists=True,
        )
    except ValueError as error:
        raise ConfigError(
            f"hydra.sweeper.direction does not fit study {name!r}: {error}."
        ) from error
    finally:
        optuna.logging.set_verbosity(verbosity)
    if [d.name.lower() for d in study.directions] != [d.lower() for d in wanted]:
        raise ConfigError(
            f"hydra.sweeper.direction=[{','.join(wanted)}] does not fit study {name!r}, which was created with "
            f"[{','.join(d.name.lower() for d in study.directions)}]; keep its directions or choose another study_name."
        )
    known = study.metric_names
    if known is None:
        # set_metric_names is marked experimental; the report reads the names.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(settings.objectives))
    elif tuple(known) != tuple(settings.objectives):
        raise ConfigError(
            f"hydra.sweeper.objectives=[{','.join(settings.objectives)}] does not fit study {name!r}, which optimises "
            f"[{','.join(known)}]; keep its objectives or choose another study_name."
        )
    return study


def load_worker_study(
    settings: SweepSettings,
    space: SearchSpace,
    storage: BaseStorage,
    name: str,
    *,
    seed_offset: int,
    worker: int,
) -> optuna.Study:
    """The study as one worker asks it: with a sampler seeded for that worker, and the pruner."""
    # Each worker's sampler gets a seed of its own: equal seeds would propose equal trials.
    seed = seed_offset + worker * WORKER_SEED_STRIDE
    sampler = build_sampler(settings.sampler, seed_offset=seed, parallel=True)
    if is_grid(settings.sampler):
        sampler = sampler(space.grid())
    pruner = build_pruner(settings.pruner, settings.pruner_options)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def count_trials(storage: BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    except Exception as error:
        raise StorageError(
            f"Cannot read study {name!r} from the Optuna storage: {error}."
        ) from error
    return len(storage.get_all_trials(study_id, deepcopy=False))


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def finished(counts: Mapping[TrialState, int]) -> int:
    """Trials that count toward n_trials: completed or pruned (failed ones are replaced)."""
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
