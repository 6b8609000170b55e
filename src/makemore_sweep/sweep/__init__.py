"""The sweep engine (sweeper plugin, study loop, storage, pruners, export).

This package is also `makemore_sweep.sweep(...)`, the notebook API's sweep (api.notebook_sweep):
Python binds the attribute `sweep` of makemore_sweep to this subpackage as soon as any of its
modules is imported, so `from makemore_sweep import sweep` gives this package and calling it
runs a sweep.
"""

import importlib
import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # Imported at call time: the API sits at the bottom of the flow, below this package.
        from makemore_sweep.api.notebook_sweep import sweep

        return sweep(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickled by name, as plain modules are: submitit pickles launcher state that refers to it.
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallablePackage
