"""The search space of a sweep, from `hydra.sweeper.params` and sweep overrides, as Optuna distributions.

Values are read with Hydra's public override parser, so the syntax is Hydra's sweep syntax:

| you write                            | Optuna distribution                          |
|--------------------------------------|----------------------------------------------|
| `int(interval(8, 32))`               | IntDistribution(8, 32)                       |
| `interval(0.0, 0.3)`                 | FloatDistribution(0.0, 0.3)                  |
| `tag(log, interval(0.001, 0.03))`    | FloatDistribution(0.001, 0.03, log=True)     |
| `range(64, 1025, step=64)`           | IntDistribution(64, 1024, step=64)           |
| `choice(128, 256, 512)`              | CategoricalDistribution((128, 256, 512))     |
| `0.01` (no sweep)                    | a fixed value, passed to every trial          |

Deletions (`~key`) are passed to every trial as they are.
"""

from __future__ import annotations

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
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from makemore_sweep.errors import ConfigError

Extender = Callable[[DictConfig, optuna.Trial], None]


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna samples, what every trial gets as it is, and an optional user extender."""

    distributions: dict[str, BaseDistribution]
    fixed_params: dict[str, Any] = field(default_factory=dict)
    fixed_overrides: list[str] = field(default_factory=list)
    extender: Extender | None = None

    def suggest(self, study: optuna.Study, config: DictConfig) -> optuna.Trial:
        """Ask the study for a new trial with every parameter of the space sampled."""
        trial = study.ask(fixed_distributions=self.distributions)
        for name, value in self.fixed_params.items():
            trial.set_user_attr(name, value)
        if self.extender is not None:
            self.extender(config, trial)
        return trial

    def trial_overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The Hydra overrides of a trial with these sampled `params`."""
        values = {**params, **self.fixed_params}
        return [*(f"{name}={value}" for name, value in values.items()), *self.fixed_overrides]

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
        name = override.get_key_element()
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
    extender = None
    if custom_search_space:
        # The user named this function in hydra.sweeper.custom_search_space: that one may run.
        extender = instantiate(
            {"_target_": custom_search_space, "_partial_": True},
            _execution_whitelist_=(custom_search_space,),
        )
    return SearchSpace(distributions, fixed_params, fixed_overrides, extender)


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__).rstrip(".")
