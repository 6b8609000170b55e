"""Conditional search spaces, named by sweep files in `hydra.sweeper.custom_search_space`.

Optuna's define-by-run API picks a value, then asks only for the keys that value has (upstream
hydra-optuna-sweeper's extender: `fn(sweeper_config, trial)`). Each name suggested is a
makemore-train override: `model` picks the config group option, `model.KEY` a key of the
network picked. A name keeps its kind of distribution across the study's trials (Optuna refuses
a categorical whose choices change, or a change of log scale); an int's range and step may vary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig

FAMILIES = ("mlp_bn", "wavenet", "transformer")


def families(config: DictConfig, trial: optuna.Trial) -> None:
    """sweeps/families.yaml: the network family as a dimension, and the keys each one has."""
    family = trial.suggest_categorical("model", FAMILIES)
    trial.suggest_float("model.dropout", 0.0, 0.25)
    if family in ("mlp_bn", "wavenet"):
        trial.suggest_int("model.n_embd", 16, 64)
        trial.suggest_int("model.n_hidden", 64, 512, log=True)
    if family == "transformer":
        # A width of whole heads for either head count (Optuna lets an int's range and step
        # change with the family; not its log scale).
        trial.suggest_int("model.n_embd", 32, 96, step=32)
        trial.suggest_int("model.n_layer", 2, 4)
        trial.suggest_categorical("model.n_head", (2, 4))
