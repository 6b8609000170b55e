"""Instantiating `_target_` configs with Hydra 1.4's execution whitelist.

Only classes from this package and Lightning may be built from a config, so an override such
as `+callbacks.x._target_=os.system` cannot run arbitrary code.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate

TRUSTED_TARGETS = ["makemore_sweep.*", "lightning.pytorch.*"]


def build(config: Any, **kwargs: Any) -> Any:
    return instantiate(config, _execution_whitelist_=TRUSTED_TARGETS, **kwargs)
