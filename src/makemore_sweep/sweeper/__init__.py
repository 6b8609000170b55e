"""The sweep engine: the Hydra sweeper over Optuna, its workers, storage, pruners and export.

One module per part, by the process it runs in and what it owns (docs/architecture.md):
settings, storage, study, ownership, claims, worker, trial_hook, results, driver. The plugin
class Hydra instantiates is `hydra_plugins.makemore_sweep_plugins.makemore_optuna`.
"""
