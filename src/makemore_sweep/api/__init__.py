"""The Python API for notebooks: `from makemore_sweep import train, sweep` (see notebook_train, notebook_sweep)."""
