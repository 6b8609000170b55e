"""The notebook API: `from makemore_sweep import train, sweep`, composed like makemore-train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from sweep_helpers import STUDY, load_study

from makemore_sweep.api.composition import compose_config
from makemore_sweep.config.locations import CONF_DIR, experiment_export_dir
from makemore_sweep.errors import ConfigError, DataError

FAST = ["trainer.max_steps=300", "logger=none"]


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, makemore_sweep\n"
        "from makemore_sweep import sweep\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'hydra', 'optuna', 'wandb'})\n"
        "print(heavy, callable(makemore_sweep.train), callable(sweep))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["[]", "True", "True"]


def test_sweep_is_the_api_function_even_once_the_sweeper_package_is_loaded() -> None:
    """The sweep engine lives in makemore_sweep.sweeper, so nothing rebinds makemore_sweep.sweep."""
    import makemore_sweep
    import makemore_sweep.sweeper.results
    from makemore_sweep import sweep

    assert (
        makemore_sweep.sweep is sweep and callable(sweep) and sweep.__module__ == "makemore_sweep"
    )


def test_user_configs_come_first_and_exports_go_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "model").mkdir(parents=True)
    (tmp_path / "configs" / "experiment").mkdir()
    # The user's mlp_bn replaces the shipped one (which sets nothing but the name over the schema).
    assert "n_hidden" not in (CONF_DIR / "model" / "mlp_bn.yaml").read_text()
    (tmp_path / "configs" / "model" / "mlp_bn.yaml").write_text("name: mlp_bn\nn_hidden: 123\n")
    (tmp_path / "configs" / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 7\n")

    config, _ = compose_config(["experiment=mine"])
    assert (config.seed, config.model.n_hidden) == (7, 123)
    sources = [(s.provider, s.path) for s in config.hydra.runtime.config_sources]
    assert sources.index(
        ("makemore-sweep user configs", str(tmp_path / "configs"))
    ) < sources.index(("main", "makemore_sweep.conf"))
    assert experiment_export_dir() == tmp_path / "configs" / "experiment"


def test_train_refuses_a_sweep() -> None:
    from makemore_sweep import train

    with pytest.raises(ConfigError, match=r"train\(\) runs one configuration"):
        train(["sweep=beat_2p2"])


@pytest.mark.slow
def test_train_twice_in_one_process_returns_each_runs_metrics(
    names_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from makemore_sweep import train

    monkeypatch.chdir(tmp_path)
    first = train([f"data.path={names_path}", *FAST])
    second = train(
        [f"data.path={names_path}", *FAST, "model.n_hidden=100"], output_dir=tmp_path / "second run"
    )

    [first_dir] = (tmp_path / "outputs").glob("*/*")
    assert first == json.loads((first_dir / "metrics.json").read_text())
    assert second == json.loads((tmp_path / "second run" / "metrics.json").read_text())
    assert first["steps"] == second["steps"] == 300
    assert first["state"] == second["state"] == "completed"
    assert second["n_params"] < first["n_params"]  # the second run's override took effect
    assert 1.5 < second["val_loss"] < first["init_loss"]
    # As from the command line: the run's config and overrides are saved (what resume= replays).
    saved = (tmp_path / "second run" / ".hydra" / "overrides.yaml").read_text()
    assert "model.n_hidden=100" in saved


@pytest.mark.slow
def test_sweep_returns_the_study_and_train_reruns_its_exported_best(
    names_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from makemore_sweep import sweep, train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [
        f"data.path={names_path}",
        "hydra.sweeper.n_trials=2",
        "trainer.max_steps=100",
        "logger=none",
    ]
    summary = sweep(STUDY, args)

    study = load_study(tmp_path)
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    assert summary["best"]["value"] == pytest.approx(study.best_value)
    assert summary["best"]["params"] == study.best_params
    assert summary["sweep_dir"] == str(tmp_path / "multirun" / STUDY)
    assert summary["experiment"] == f"{STUDY}_best"
    assert (
        Path(summary["experiment_file"])
        == tmp_path / "configs" / "experiment" / f"{STUDY}_best.yaml"
    )

    rerun = train([f"experiment={STUDY}_best"], output_dir=tmp_path / "rerun")
    assert rerun["val_loss"] == pytest.approx(study.best_value, abs=1e-4)


@pytest.mark.slow
def test_a_multi_objective_sweep_returns_its_pareto_front_with_the_experiments(
    names_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from makemore_sweep import sweep

    monkeypatch.chdir(tmp_path)
    summary = sweep(
        "pareto",
        [
            f"data.path={names_path}",
            "hydra.sweeper.n_trials=3",
            "trainer.max_steps=60",
            "logger=none",
        ],
    )

    study = load_study(tmp_path, "dev_vs_size")
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    assert summary["objectives"] == ["val_loss", "n_params"]
    assert [(f["number"], f["values"]) for f in summary["pareto_front"]] == [
        (t.number, t.values) for t in front
    ]
    for entry in summary["pareto_front"]:
        assert (tmp_path / "configs" / "experiment" / f"{entry['experiment']}.yaml").is_file()


def test_sweep_hands_its_process_the_data_path_of_the_callers_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sweep() starts makemore-train with the overrides composed here: the default data.path
    (data/names.txt) is already absolute, under the caller's working directory."""
    monkeypatch.chdir(tmp_path)
    config, args = compose_config(["sweep=beat_2p2", "hydra.sweeper.n_trials=1"])
    assert config.data.path == str(tmp_path / "data" / "names.txt")
    assert args[-1] == f"data.path={tmp_path / 'data' / 'names.txt'}"
    assert args[:2] == ["sweep=beat_2p2", "hydra.sweeper.n_trials=1"]


@pytest.mark.slow
def test_train_reads_relative_data_paths_from_the_callers_folder(
    names_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a subfolder (a notebook in docs/, say), as `makemore-train` run in that folder reads them."""
    from makemore_sweep import train

    notebooks, shared = tmp_path / "notebooks", tmp_path / "shared"
    (notebooks / "data").mkdir(parents=True)
    shared.mkdir()
    (notebooks / "data" / "names.txt").symlink_to(names_path)
    (shared / "names.txt").symlink_to(names_path)
    monkeypatch.chdir(notebooks)
    tiny = ["trainer.max_steps=20", "trainer.val_every_n_steps=20", "logger=none"]
    default = train(tiny, output_dir="runs/default")  # data/names.txt
    relative = train(["data.path=../shared/names.txt", *tiny], output_dir="runs/relative")

    assert default["n_train"] == relative["n_train"] == 182_625
    for run, read in [
        ("default", notebooks / "data" / "names.txt"),
        ("relative", shared / "names.txt"),
    ]:
        saved = notebooks / "runs" / run / ".hydra"
        # What the run recorded (and resume= replays) is the file it read, wherever it is replayed from.
        assert OmegaConf.load(saved / "config.yaml").data.path == str(read)
        assert OmegaConf.load(saved / "overrides.yaml")[-1] == f"data.path={read}"


@pytest.mark.slow
def test_a_data_path_that_cannot_be_read_is_named_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from makemore_sweep import train

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "blocked").write_text("a file, so no folder can be made here\n")
    monkeypatch.chdir(tmp_path / "notebooks")
    with pytest.raises(DataError) as raised:
        train(["data.path=blocked/names.txt", "logger=none"], output_dir=tmp_path / "run")
    assert str(raised.value).startswith(
        f"{tmp_path / 'notebooks' / 'blocked' / 'names.txt'} is missing"
    )
