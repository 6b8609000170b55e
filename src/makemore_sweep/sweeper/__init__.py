"""The sweep engine: the Hydra sweeper over Optuna, its workers, storage, pruners and export.

One module per part, by the process it runs in and what it owns (docs/architecture.md):
storage, study (every process); claims, worker, packed_worker, trial_hook (the processes that
run trials); driver, runners, results (the sweep process). Its keys, `hydra.sweeper.*`, are a
config schema (`makemore_sweep.config.sweep_settings`). The plugin class Hydra instantiates is
`hydra_plugins.makemore_sweep_plugins.makemore_optuna`.
"""
