"""The wheel, installed (not editable) in a fresh venv, works from an empty folder anywhere.

Built from a copy of the checkout's packaging inputs; installed with pip into a new venv that
borrows only the dependencies from the running interpreter's import path (.pth lines: the test's
own venv, in CI the one `make test` made), never the checkout's sources. From an empty
temporary folder it trains, sweeps, reruns the sweep's exported best, builds the report, and
trains and samples a network the user wrote there (./my_nets.py, ./configs/model).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from omegaconf import OmegaConf
from user_nets import write_user_folder

pytestmark = pytest.mark.slow

PACKAGING_INPUTS = ("pyproject.toml", "README.md", "conf", "sweeps", "src")
STUDY = "beat_2p2"


def run(
    command: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> str:
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def package_files(site_packages: Path) -> set[Path]:
    """The installed package's files, bytecode caches aside."""
    root = site_packages / "makemore_sweep"
    return {
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed and the dependencies borrowed."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in PACKAGING_INPUTS:
        origin = REPO_ROOT / name
        if (
            origin.is_dir()
        ):  # symlinks kept as links, as in a clone (conf/sweep, src/makemore_sweep/conf)
            shutil.copytree(
                origin,
                source / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            shutil.copy2(origin, source / name)
    # --no-build-isolation: setuptools comes from the dev dependencies, no index needed.
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            base / "dist",
            source,
        ],
        cwd=base,
    )
    [wheel] = (base / "dist").glob("makemore_sweep-*.whl")

    target = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", target], cwd=base)
    python = target / "bin" / "python"
    # Installed before the dependencies are visible, so pip sees no makemore-sweep to replace.
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel],
        cwd=base,
    )
    site_packages = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base
        ).strip()
    )
    (site_packages / "zz_borrowed_dependencies.pth").write_text(
        "".join(f"{p}\n" for p in dependency_paths())
    )
    return target


def dependency_paths() -> list[str]:
    """Where the running interpreter imports third-party packages from, as plain folders.

    Its site-packages and whatever its .pth files added, but never a folder holding a
    makemore_sweep (the checkout's src/ of an editable install, PYTHONPATH=src), nor the
    checkout itself or the standard library (the new venv has its own). Listed as plain path
    lines, .pth files inside those folders are not run, so an editable install stays out.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    paths = []
    for entry in dict.fromkeys(sys.path):
        folder = Path(entry).resolve() if entry else None
        if folder is None or not folder.is_dir() or (folder / "makemore_sweep").exists():
            continue
        in_stdlib = folder.is_relative_to(stdlib) and not {"site-packages", "dist-packages"} & set(
            folder.parts
        )
        # The checkout's own folders (its root, tests/) stay out; a venv inside it (make test's .venv) does not.
        in_checkout = folder.is_relative_to(REPO_ROOT.resolve()) and not {
            "site-packages",
            "dist-packages",
        } & set(folder.parts)
        if in_stdlib or in_checkout:
            continue
        paths.append(str(folder))
    return paths


def test_the_installed_wheel_trains_sweeps_reruns_and_reports_from_an_empty_folder(
    venv: Path, names_path: Path, tmp_path: Path
) -> None:
    bin_dir, work = venv / "bin", tmp_path / "work"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "MAKEMORE_ROOT", "WANDB_API_KEY", "WANDB_SERVICE")
    }
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")

    where = run(
        [
            bin_dir / "python",
            "-c",
            "import makemore_sweep, makemore_sweep.conf as c; print(makemore_sweep.__file__); print(c.__file__)",
        ],
        work,
        env,
    )
    site_packages = Path(where.split()[0]).parent.parent
    assert all(Path(line).is_relative_to(venv) for line in where.split()), where
    installed = package_files(site_packages)
    assert {
        Path("conf/train.yaml"),
        Path(f"conf/sweep/{STUDY}.yaml"),
        Path("report/templates/report.html.j2"),
    } <= installed

    # One run with the default logger (W&B offline).
    data = f"data.path={names_path}"
    run([bin_dir / "makemore-train", data, "trainer.max_steps=300"], work, env)
    [metrics] = [json.loads(p.read_text()) for p in (work / "outputs").rglob("metrics.json")]
    assert metrics["steps"] == 300 and metrics["state"] == "completed"

    # A two-trial sweep exports its best trial into ./configs/experiment, which the rerun finds.
    sweep = [
        data,
        f"sweep={STUDY}",
        "hydra.sweeper.n_trials=2",
        "trainer.max_steps=300",
        "logger=csv",
    ]
    out = run([bin_dir / "makemore-train", *sweep], work, env)
    exported = work / "configs" / "experiment" / f"{STUDY}_best.yaml"
    assert exported.is_file(), out[-3000:]
    run([bin_dir / "makemore-train", f"experiment={STUDY}_best", "hydra.run.dir=rerun"], work, env)
    rerun = json.loads((work / "rerun" / "metrics.json").read_text())
    results = OmegaConf.load(work / "multirun" / STUDY / "optimization_results.yaml")
    assert rerun["val_loss"] == pytest.approx(results.best_value, abs=1e-4)

    out = run(
        [
            bin_dir / "makemore-report",
            "--storage",
            f"sqlite:///{work}/studies/{STUDY}.db",
            "--study",
            STUDY,
        ],
        work,
        env,
    )
    assert (work / "reports" / STUDY / "report.html").is_file(), out
    assert "2 trials" in out

    # The user's own network (issue 26), in ./my_nets.py and ./configs/model: found by the
    # installed scripts from the folder they run in, trained, and sampled from its checkpoint.
    write_user_folder(work)
    resnet = work / "outputs" / "resnet"
    run(
        [bin_dir / "makemore-train", data, "model=resnet", "trainer.max_steps=200", "logger=csv"]
        + [f"hydra.run.dir={resnet}"],
        work,
        env,
    )
    metrics = json.loads((resnet / "metrics.json").read_text())
    true_count = run(
        [
            bin_dir / "python",
            "-c",
            "import my_nets; print(sum(p.numel() for p in my_nets.ResidualNet(27, 3, width=24).parameters()))",
        ],
        work,
        env,
    )
    assert metrics["state"] == "completed" and metrics["n_params"] == int(true_count)
    sampled = run([bin_dir / "makemore-sample", resnet, "--n", "3"], work, env)
    assert len(sampled.split()) == 3

    # Everything it wrote is under the folder it ran in; nothing in the installed package.
    assert package_files(site_packages) == installed
    assert {p.name for p in work.iterdir()} <= {
        "outputs",
        "multirun",
        "studies",
        "configs",
        "rerun",
        "reports",
        "wandb",
        "my_nets.py",
        "__pycache__",
    }
