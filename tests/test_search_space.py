"""The sweep's search space from Hydra's sweep syntax (Hydra's public override parser) to Optuna."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import optuna
import pytest
from conftest import REPO_ROOT
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from makemore_sweep.errors import ConfigError
from makemore_sweep.sweeper.study import build_search_space


def test_each_sweep_syntax_becomes_its_optuna_distribution() -> None:
    space = build_search_space(
        {
            "model.n_embd": "int(interval(8, 32))",
            "model.dropout": "interval(0.0, 0.3)",
            "optim.lr": "tag(log, interval(0.001, 0.03))",
            "model.n_hidden": "range(64, 1025, step=64)",
            "data.batch_size": "choice(128, 256, 512)",
            "model": "choice(mlp_bn, mlp)",
            "x.step": "range(0.0, 1.0, step=0.25)",
        },
        [],
    )
    assert space.distributions == {
        "model.n_embd": IntDistribution(8, 32),
        "model.dropout": FloatDistribution(0.0, 0.3),
        "optim.lr": FloatDistribution(0.001, 0.03, log=True),
        "model.n_hidden": IntDistribution(64, 1024, step=64),
        "data.batch_size": CategoricalDistribution([128, 256, 512]),
        "model": CategoricalDistribution(["mlp_bn", "mlp"]),
        "x.step": FloatDistribution(0.0, 0.75, step=0.25),
    }
    assert space.fixed_params == {}


def test_the_command_line_adds_fixes_and_replaces_dimensions() -> None:
    space = build_search_space(
        {"model.n_embd": "int(interval(8, 32))", "optim.lr": "tag(log, interval(0.001, 0.03))"},
        ["optim.lr=0.01", "model.n_layers=int(interval(1, 3))", "sweep=beat_2p2", "~trainer.foo"],
    )
    assert space.distributions == {
        "model.n_embd": IntDistribution(8, 32),
        "model.n_layers": IntDistribution(1, 3),
    }
    assert space.fixed_params == {"optim.lr": "0.01", "sweep": "beat_2p2"}
    assert space.fixed_overrides == ["~trainer.foo"]
    # A network's keys are forced (++): its YAML need not list them (config/network_spec.py).
    assert space.trial_overrides({"model.n_embd": 9, "model.n_layers": 2}) == [
        "++model.n_embd=9",
        "++model.n_layers=2",
        "optim.lr=0.01",
        "sweep=beat_2p2",
        "~trainer.foo",
    ]


def test_a_study_asks_with_the_space_and_enqueued_values_win(tmp_path: Path) -> None:
    space = build_search_space({"a": "int(interval(1, 3))", "b": "choice(x, y)"}, ["c=5"])
    study = optuna.create_study()
    study.enqueue_trial({"a": 7})  # outside the range: allowed for enqueued trials
    from omegaconf import OmegaConf

    with pytest.warns(UserWarning, match="out of range"):  # Optuna says so, and uses it
        first = space.suggest(study, OmegaConf.create())
    second = space.suggest(study, OmegaConf.create())
    assert first.params["a"] == 7 and first.params["b"] in ("x", "y")
    assert 1 <= second.params["a"] <= 3
    assert first.user_attrs["c"] == "5"


def test_grid_choices_and_errors_name_the_parameter() -> None:
    space = build_search_space(
        {"a": "range(1, 4)", "b": "choice(x, y)", "c": "range(0.0, 1.0, step=0.5)"}, []
    )
    assert space.grid() == {"a": [1, 2, 3], "b": ["x", "y"], "c": [0.0, 0.5]}
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.params\.d is continuous"):
        build_search_space({"d": "interval(0, 1.5)"}, []).grid()
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.params\.e is invalid"):
        build_search_space({"e": "range(1, 1)"}, [])
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.params are invalid"):
        build_search_space({"f": "interval(1,"}, [])


def test_the_sweeper_uses_no_private_name_of_the_upstream_plugins() -> None:
    """Issue 10: search space, sampler and launching rest on public Hydra, Optuna and submitit APIs."""
    private = re.compile(
        r"hydra_optuna_sweeper\._impl|_get_directions|_configure_trials|_process_searchspace_config"
        r"|_parse_sweeper_params_config|_to_grid_sampler_choices|_EXECUTOR|\._suggest\(|\._storage\b|hydra\._internal"
    )
    sources = [
        *(REPO_ROOT / "src" / "makemore_sweep" / "sweeper").glob("*.py"),
        *(REPO_ROOT / "src" / "makemore_sweep" / "cluster").glob("*.py"),
        *(REPO_ROOT / "src" / "hydra_plugins" / "makemore_sweep_plugins").glob("*.py"),
    ]
    assert len(sources) >= 12  # the sweeper's 9 modules, the launchers, the plugin class
    offenders = [
        f"{p.name}: {m.group(0)}" for p in sources for m in private.finditer(p.read_text())
    ]
    assert offenders == []  # module length: tests/test_layout.py's rule for every module


def widen_with_dropout(config: object, trial: optuna.Trial) -> None:
    """A `custom_search_space` extender: a dimension added in code."""
    trial.suggest_float("model.dropout", 0.0, 0.5)


def test_a_custom_search_space_extends_each_new_trial() -> None:
    from omegaconf import OmegaConf

    space = build_search_space(
        {"a": "int(interval(1, 3))"}, [], "test_search_space.widen_with_dropout"
    )
    trial = space.suggest(optuna.create_study(), OmegaConf.create())
    assert set(trial.params) == {"a", "model.dropout"}
    # The space travels to worker processes pickled: the extender goes with it, by its name.
    travelled = pickle.loads(pickle.dumps(space))
    trial = travelled.suggest(optuna.create_study(), OmegaConf.create())
    assert set(trial.params) == {"a", "model.dropout"}


def test_the_families_space_asks_each_family_only_for_its_own_keys() -> None:
    """sweeps/families.yaml's space: a family's keys only, and a Transformer width of whole
    heads (a 39-d, 2-head Transformer cannot be built: its trials failed the sweep)."""
    from omegaconf import OmegaConf

    space = build_search_space({}, [], "makemore_sweep.config.search_spaces.families")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        params = space.suggest(study, OmegaConf.create()).params
        seen.add(params["model"])
        if params["model"] == "transformer":
            assert params["model.n_embd"] % params["model.n_head"] == 0, params
            assert "model.n_hidden" not in params
        else:
            assert {"model.n_layer", "model.n_head"}.isdisjoint(params)
    assert seen == {"mlp_bn", "wavenet", "transformer"}
