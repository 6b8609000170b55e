"""Instantiating `_target_` configs with Hydra 1.4's execution whitelist.

Only classes from this package and Lightning may be built from a config, so an override such
as `+callbacks.x._target_=os.system` cannot run arbitrary code. A target that cannot be found
or is refused, or a constructor that rejects its arguments (`trainer.accelerator=nosuch`,
`+trainer.foo=1`), becomes a `ConfigError` naming the target instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from makemore_sweep.errors import ConfigError, UserError

TRUSTED_TARGETS = ["makemore_sweep.*", "lightning.pytorch.*"]


def build(config: Any, **kwargs: Any) -> Any:
    try:
        return instantiate(config, _execution_whitelist_=TRUSTED_TARGETS, **kwargs)
    except UserError:
        raise
    except InstantiationException as error:
        raise ConfigError(
            f"{_target_of(config)} cannot be built from the configuration: {_one_line(error)}"
        ) from error
    except _constructor_errors() as error:
        # Raised by the target's constructor: its arguments come from the config.
        raise ConfigError(
            f"The configuration of {_target_of(config)} is invalid: {_one_line(error)}"
        ) from error


def _constructor_errors() -> tuple[type[Exception], ...]:
    """What a constructor raises for bad arguments: TypeError, ValueError and, once Lightning is
    loaded (a Lightning target loads it), its MisconfigurationException. Not importing Lightning
    here keeps it out of the sweep process, which builds launchers only."""
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")
    return (
        TypeError,
        ValueError,
        *([lightning_errors.MisconfigurationException] if lightning_errors else []),
    )


def _target_of(config: Any) -> str:
    target = config.get("_target_") if isinstance(config, DictConfig | dict) else None
    return str(target) if target else "an object"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()).rstrip(".")
