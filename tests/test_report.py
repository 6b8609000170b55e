"""makemore-report on a real tiny sweep, the W&B runs of that sweep, and the report's building blocks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from run_files import PNG_MAGIC, visible_text, wandb_records
from tiny_sweep import HIDDEN_SIZES, STUDY_NAME, TinySweep, build_tiny_sweep

from makemore_sweep.report.embeddings import project_to_2d
from makemore_sweep.report.figures import history_figure
from makemore_sweep.report.multirun_source import (
    infer_distributions,
    load_multirun_source,
    read_overrides,
    varying_keys,
)

MIN_REPORT_BYTES = 20_000


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, names_path: Path) -> TinySweep:
    return build_tiny_sweep(tmp_path_factory.getbasetemp(), names_path)


def report_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "makemore_sweep.cli.report", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_self_contained(html: str) -> None:
    """Nothing fetched from the network: no external scripts, styles, images or frames."""
    assert not re.search(r"<script\b[^>]*\bsrc=", html, re.IGNORECASE), "report.html loads a script"
    remote = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.IGNORECASE)
    assert not remote, f"report.html references remote resources: {remote[:3]}"
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", html, re.IGNORECASE), (
        "report.html imports remote CSS"
    )


# -- the whole command on a real sweep ---------------------------------------------------------------
@pytest.mark.slow
def test_report_of_a_study_is_a_self_contained_page_with_figures(
    tiny_sweep: TinySweep, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = report_cli(
        ["--storage", tiny_sweep.storage_url, "--study", STUDY_NAME, "--out", str(out)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = out / "report.html"
    assert report.stat().st_size > MIN_REPORT_BYTES
    html = report.read_text()
    assert_self_contained(html)

    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 3, [p.name for p in pngs]
    for png in pngs:
        assert png.read_bytes().startswith(PNG_MAGIC), png
    # Every figure of the issue is drawn for a 3-trial study with one searched parameter.
    assert {p.stem for p in pngs} >= {
        "history",
        "curves",
        "parallel_coordinates",
        "importances",
        "slices",
        "embeddings",
    }
    assert html.count("data:image/png;base64,") == len(pngs)

    text = visible_text(html)
    assert STUDY_NAME in text
    assert f"{len(HIDDEN_SIZES)} trials" in text
    assert f"{tiny_sweep.best_value:.4f}" in text
    # The top-trials table: one row per trial with its parameter, dev and test loss, size and time.
    for run_dir, n_hidden in zip(tiny_sweep.run_dirs, HIDDEN_SIZES, strict=True):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        row = re.search(
            rf"<tr[^>]*>(?:(?!</tr>).)*?<td[^>]*>{n_hidden}</td>(?:(?!</tr>).)*</tr>",
            html,
            re.DOTALL,
        )
        assert row, f"no table row for model.n_hidden={n_hidden}"
        cells = visible_text(row.group(0))
        assert f"{metrics['val_loss']:.4f}" in cells and f"{metrics['test_loss']:.4f}" in cells
        assert f"{metrics['n_params']:,}" in cells and "complete" in cells
    assert "report.html" in result.stdout


@pytest.mark.slow
def test_report_of_a_multirun_folder_reads_overrides_and_metrics(
    tiny_sweep: TinySweep, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = report_cli([str(tiny_sweep.multirun_dir), "--out", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    html = (out / "report.html").read_text()
    assert (out / "report.html").stat().st_size > MIN_REPORT_BYTES
    assert_self_contained(html)
    assert len(list(out.glob("*.png"))) >= 3

    source = load_multirun_source(tiny_sweep.multirun_dir)
    assert source.param_names == [
        "model.n_hidden"
    ]  # data.path and the budget are the same in every run
    assert [t.params["model.n_hidden"] for t in source.trials] == list(HIDDEN_SIZES)
    assert all(t.state == "COMPLETE" for t in source.trials)
    text = visible_text(html)
    assert f"{len(HIDDEN_SIZES)} trials" in text
    assert f"{tiny_sweep.best_value:.4f}" in text  # the same runs, so the same best dev loss


# -- W&B runs of the sweep ----------------------------------------------------------------------------
@pytest.mark.slow
def test_wandb_runs_of_a_sweep_share_one_group_and_compare_well(tiny_sweep: TinySweep) -> None:
    groups, names = set(), set()
    for run_dir, n_hidden in zip(tiny_sweep.run_dirs, HIDDEN_SIZES, strict=True):
        records = wandb_records(run_dir)
        run = next(r["run"] for r in records if r["type"] == "run")
        groups.add(run.get("run_group"))
        names.add(run.get("display_name"))
        assert run["job_type"] == "train"
        config: dict = {}
        for record in records:
            if record["type"] == "config":
                config.update(record["config"].get("update", {}))
        assert config["model.n_hidden"] == n_hidden  # flat dotted keys: panels work as is
        assert not [k for k, v in config.items() if isinstance(v, dict) and k != "_wandb"], (
            "nested config"
        )
        summary_text = json.dumps([r for r in records if r["type"] in ("summary", "history")])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert repr(metrics["val_loss"]) in summary_text
        assert "samples" in summary_text and "embeddings" in summary_text
        assert list(
            (run_dir / "wandb" / "latest-run" / "files" / "media" / "images").glob(
                "embeddings_*.png"
            )
        )
        assert (run_dir / "embeddings.png").read_bytes().startswith(PNG_MAGIC)
    assert groups == {"multirun/tiny"}, groups  # the sweep folder, relative to where it ran
    assert len(names) == len(HIDDEN_SIZES)


# -- building blocks -------------------------------------------------------------------------------------
def write_run(folder: Path, overrides: list[str], metrics: dict | None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize(
    "prefix", ["", "trial_"]
)  # Hydra's default job folders, and Optuna sweeps'
def test_multirun_folder_without_optuna_becomes_a_study(tmp_path: Path, prefix: str) -> None:
    """Params are the overrides that vary; a run without metrics.json is a failed trial."""
    sweep = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    runs = [  # job, overrides, metrics.json
        (0, ["optim.lr=0.001", "model=mlp_bn"], {"val_loss": 2.31}),
        (1, ["optim.lr=0.1", "model=mlp"], {"val_loss": 2.25}),
        (2, ["optim.lr=0.01", "model=mlp"], None),
        (10, ["optim.lr=0.03", "model=mlp_bn"], {"val_loss": 2.4, "state": "failed"}),
    ]
    for job, overrides, metrics in runs:
        # data.path is the same everywhere; the sweeper's optuna_trial.* name the trial, not a setting.
        extra = ["data.path=/x/names.txt", f"+optuna_trial.number={job}"]
        write_run(sweep / f"{prefix}{job}", overrides + extra, metrics)
    source = load_multirun_source(sweep)
    assert source.title == "2026-01-01/10-00-00"
    assert source.param_names == ["optim.lr", "model"]
    assert [t.run_dir.name for t in source.trials] == [
        f"{prefix}{n}" for n in (0, 1, 2, 10)
    ]  # numeric order
    assert [t.dev_loss for t in source.trials] == [
        2.31,
        2.25,
        None,
        2.4,
    ]  # a failed run's best still shows
    assert [t.state for t in source.trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert source.best.params == {"optim.lr": 0.1, "model": "mlp"}
    assert [t.number for t in source.ranked()] == [1, 0, 2, 3]
    assert len(source.study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2
    assert source.study.best_value == pytest.approx(2.25)

    # The history marks the target and the lectures' dev losses as horizontal lines.
    ax = history_figure(source).axes[0]
    horizontal = {
        round(line.get_ydata()[0], 3) for line in ax.get_lines() if len(set(line.get_ydata())) == 1
    }
    assert horizontal >= {2.2, 2.453, 2.17, 2.106, 2.027, 1.993}


def test_overrides_are_parsed_by_hydra_including_quoting(tmp_path: Path) -> None:
    write_run(
        tmp_path,
        ["model.n_hidden=64", "+tag='a b'", "optim.lr=3e-4", "~callbacks.checkpoint"],
        None,
    )
    assert read_overrides(tmp_path) == {"model.n_hidden": 64, "tag": "a b", "optim.lr": 3e-4}


def test_searched_parameters_and_their_distributions() -> None:
    runs = [
        {"a": 1, "lr": 1e-4, "m": "x", "data.path": "p"},
        {"a": 2, "lr": 0.1, "m": "y", "data.path": "q"},
        {"a": 1, "lr": 0.01},
    ]
    assert varying_keys(runs) == ["a", "lr", "m"]
    distributions = infer_distributions({"a": [1, 2, 1], "lr": [1e-4, 0.1, 0.01], "m": ["x", "y"]})
    assert distributions["a"] == optuna.distributions.IntDistribution(1, 2)
    assert distributions["lr"] == optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)
    assert distributions["m"] == optuna.distributions.CategoricalDistribution(("x", "y"))


def test_embeddings_are_projected_on_their_principal_components() -> None:
    rng = np.random.default_rng(0)
    direction = np.array([1.0, 2.0, -1.0, 0.5]) / np.linalg.norm([1.0, 2.0, -1.0, 0.5])
    along = rng.normal(size=27)
    table = np.outer(along, direction) * 10 + rng.normal(scale=0.01, size=(27, 4))
    points = project_to_2d(table, [chr(97 + i) for i in range(27)])
    assert points.xy.shape == (27, 2)
    # The first component recovers the line the points lie on (up to sign), the second is noise.
    assert abs(np.corrcoef(points.xy[:, 0], along)[0, 1]) > 0.999
    assert np.std(points.xy[:, 1]) < 0.05
    assert points.axis_labels[0].startswith("PC 1 (100%")
    two_d = project_to_2d(table[:, :2], list("abcdefghijklmnopqrstuvwxyz."))
    assert np.array_equal(two_d.xy, table[:, :2])


def test_report_of_a_journal_study_without_run_folders_says_what_it_cannot_draw(
    tmp_path: Path,
) -> None:
    """Journal storages as sweeps name them (journal:PATH); trials without run_dir still get a report."""
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "study.log"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="journal-study", storage=storage)
    study.optimize(
        lambda trial: 2.0 + trial.suggest_float("optim.lr", 1e-3, 1e-1, log=True), n_trials=4
    )
    out = tmp_path / "report"
    result = report_cli([f"--storage=journal:{journal}", "--out", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = visible_text((out / "report.html").read_text())
    assert "journal-study" in text and "4 trials" in text and f"{study.best_value:.4f}" in text
    assert {p.stem for p in out.glob("*.png")} == {
        "history",
        "parallel_coordinates",
        "importances",
        "slices",
    }
    assert "not drawn: curves (no completed trial has a learning curve" in result.stdout
    assert "Not drawn: no completed trial has a checkpoint with an embedding table." in text


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--storage", "sqlite:///{tmp}/missing.db", "--study", "x"], "missing.db"),
        (["--storage", "{tmp}/missing.log"], "missing.log"),
        (["--storage", "journal:{tmp}/missing.log"], "missing.log"),
        (["--storage", "sqlite:///{db}", "--study", "nope"], "'nope'"),
        (["{tmp}/not-a-sweep"], "not-a-sweep"),
        (["{tmp}/empty"], "holds no runs"),
        (["{tmp}", "--storage", "sqlite:///{db}"], "not both"),
        ([], "--storage"),
        (["--study", "x", "{tmp}"], "--study needs --storage"),
    ],
)
def test_user_errors_are_one_sentence_without_traceback(
    tmp_path: Path, args: list[str], culprit: str
) -> None:
    db = tmp_path / "one.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="only", storage=f"sqlite:///{db}")
    (tmp_path / "empty").mkdir()
    result = report_cli([a.format(tmp=tmp_path, db=db) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and culprit in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "missing.db").exists()  # a typo never creates an empty study database


def test_report_of_a_multi_objective_study_draws_its_pareto_front(tmp_path: Path) -> None:
    """Dev loss against parameter count: the front is Optuna's best_trials, and nothing else is on it."""
    from optuna.storages.journal import JournalFileBackend

    from makemore_sweep.report.figures import pareto_figure
    from makemore_sweep.report.sources import load_study_source

    journal = tmp_path / "pareto.log"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(
        study_name="pareto", storage=storage, directions=["minimize", "minimize"]
    )
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["val_loss", "n_params"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        width = trial.suggest_int("model.n_hidden", 16, 1024, log=True)
        noise = trial.suggest_float("noise", 0.0, 0.2)
        return 2.0 + 30.0 / width + noise, float(width * 40)

    study.optimize(objective, n_trials=12)
    front = sorted(t.number for t in study.best_trials)

    source = load_study_source(f"journal:{journal}", "pareto")
    assert source.multi_objective and source.objectives == ("val_loss", "n_params")
    assert source.pareto_front == front
    assert all(
        t.value == t.values[0] for t in source.completed
    )  # the dev loss is the report's value
    axes = pareto_figure(source).axes[0]
    assert axes.get_title(loc="left") == "Pareto front · pareto" and axes.get_xlabel() == "n_params"
    front_line = axes.get_lines()[0]  # drawn first: the step line through the front
    assert sorted(front_line.get_xdata()) == sorted(t.values[1] for t in study.best_trials)

    out = tmp_path / "report"
    result = report_cli([f"--storage=journal:{journal}", "--out", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"trials {', '.join(map(str, front))}" in result.stdout
    text = visible_text((out / "report.html").read_text())
    assert "Pareto front" in text and (out / "pareto.png").is_file()
