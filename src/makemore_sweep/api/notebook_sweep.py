"""`makemore_sweep.sweep(name, overrides, output_dir)`: a named sweep from Python, and its summary.

    from makemore_sweep import sweep
    study = sweep("beat_2p2", ["hydra.sweeper.n_trials=4"])
    study["best"]["value"], study["best"]["params"], study["experiment"]

The configuration is composed in-process first (api.composition: same config, search path and
validation as the CLI), so a bad override raises at once. The sweep itself is the real
`makemore-train sweep=NAME` multirun, run in a child process of this same interpreter: the
sweeper installs signal handlers, starts launcher processes, ends trials with SystemExit and
configures logging, none of which belongs inside a notebook kernel; a child keeps the kernel
usable and still streams the sweep's progress into the cell. The summary is then read from the
study's Optuna storage, as makemore-report reads it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from makemore_sweep.api.composition import compose_config, path_override
from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.errors import ConfigError, UserError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.report.sources import ReportSource, load_study_source
from makemore_sweep.sweeper.results import experiment_name, pareto_experiment_name
from makemore_sweep.sweeper.storage import resolve_storage_url


def sweep(
    name: str, overrides: Sequence[str] = (), output_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Run the sweep file `sweeps/<name>.yaml` (or resume its study) and return the study's summary.

    `overrides` are makemore-train's (`hydra.sweeper.n_trials=4`, `trainer.max_steps=1000`);
    `output_dir` is the sweep folder (default: the sweep file's, multirun/<study>). Relative paths
    (data.path, whose default is data/names.txt, output_dir, the study's storage) are relative to
    the working directory at the call, as for `makemore-train sweep=NAME` run there. Returns
    study_name, storage (password hidden), sweep_dir, best (number, value, params, run_dir,
    metrics) or None, experiment (the name to pass as `experiment=`, None when not exported),
    experiment_file, trials (number, state, value, params, run_dir), in trial order, and, for
    several objectives, objectives and pareto_front (number, values, experiment) by the first one.
    """
    # `args` come back as composed: a relative data.path made absolute here, where the caller is,
    # so the sweep process and its workers read the file the caller means (api/composition.py).
    config, args = compose_config([f"sweep={name}", *overrides])
    sweeper = config.hydra.sweeper
    if "study_name" not in sweeper or "pruner" not in sweeper:
        raise ConfigError(
            f"sweep={name} does not select the makemore_optuna sweeper; name a file of sweeps/."
        )
    study_name = str(sweeper.study_name)
    sweep_dir = (
        Path(output_dir if output_dir is not None else config.hydra.sweep.dir)
        .expanduser()
        .resolve()
    )
    storage_url = resolve_storage_url(sweeper.get("storage"), study_name, Path.cwd())
    export_dir = Path(sweeper.get("export_dir") or experiment_export_dir())

    run_sweep_process([*args, path_override("hydra.sweep.dir", sweep_dir)])

    source = load_study_source(storage_url, study_name)
    best = source.best
    experiment_file = export_dir / f"{experiment_name(study_name)}.yaml"
    return {
        "study_name": study_name,
        "storage": mask_secrets(storage_url),
        "sweep_dir": str(sweep_dir),
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": str(best.run_dir) if best.run_dir else None,
            "metrics": best.metrics,
        },
        "experiment": experiment_file.stem if experiment_file.is_file() else None,
        "experiment_file": str(experiment_file),
        "trials": [
            {
                "number": t.number,
                "state": t.state,
                "value": t.value,
                "params": t.params,
                "run_dir": str(t.run_dir) if t.run_dir else None,
            }
            for t in sorted(source.trials, key=lambda t: t.number)
        ],
        **(pareto_summary(source, study_name, export_dir) if source.multi_objective else {}),
    }


def pareto_summary(source: ReportSource, study_name: str, export_dir: Path) -> dict[str, Any]:
    on_front = set(source.pareto_front)
    front = sorted((t for t in source.trials if t.number in on_front), key=lambda t: t.values or ())
    return {
        "objectives": list(source.objectives),
        "pareto_front": [
            {
                "number": t.number,
                "values": list(t.values or ()),
                "experiment": name if (export_dir / f"{name}.yaml").is_file() else None,
            }
            for t in front
            for name in [pareto_experiment_name(study_name, t.number)]
        ],
    }


def run_sweep_process(args: list[str]) -> None:
    """`makemore-train ARGS` in a child process, its output printed here line by line.

    Interrupting the caller (Ctrl-C, or a notebook's stop button) interrupts the sweep, which
    then stops as on the command line: finished trials are kept and a rerun resumes the study.
    """
    command = [sys.executable, "-m", "makemore_sweep.cli.train", *args]
    # WANDB_SERVICE points at this kernel's W&B service once train() has logged to W&B here; the
    # sweep's processes start their own, as a sweep started from a shell does.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    ) as child:
        assert child.stdout is not None
        last_error = None
        try:
            for line in child.stdout:
                print(line, end="", flush=True)
                if line.startswith("error: "):
                    last_error = line.removeprefix("error: ").strip()
            child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            child.wait()
            raise
    if child.returncode != 0:
        reason = (
            last_error
            or f"makemore-train exited with status {child.returncode}; its output is above."
        )
        error = UserError(f"The sweep {' '.join(args)} failed: {reason}")
        error.exit_code = child.returncode
        raise error
