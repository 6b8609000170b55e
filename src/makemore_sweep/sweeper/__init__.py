"""The sweep engine: the Hydra sweeper plugin over Optuna, its workers, study storage, pruners and export."""
