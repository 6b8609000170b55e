"""A Hydra multirun folder as a report source: an in-memory study whose parameters are the overrides that vary.

A grid sweep without Optuna (`makemore-train -m optim.lr=0.003,0.01`) leaves one folder per job with
`.hydra/overrides.yaml` and metrics.json; the report reads them as trials of a study.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from makemore_sweep.errors import DataError
from makemore_sweep.report.sources import (
    NOT_PARAMETERS,
    OVERRIDES_FILE,
    RUN_DIR_ATTR,
    ReportSource,
    TrialRecord,
    read_run_metrics,
)


def load_multirun_source(folder: Path) -> ReportSource:
    """The runs of a multirun folder as an in-memory study: the overrides that vary are its parameters."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder; give the multirun folder of a sweep (multirun/DATE/TIME)."
        )
    run_dirs = sorted((p.parent.parent for p in folder.glob(f"*/{OVERRIDES_FILE}")), key=_job_order)
    if not run_dirs:
        raise DataError(
            f"{folder} holds no runs (no */{OVERRIDES_FILE}); give the multirun folder of a sweep."
        )
    overrides = {run: read_overrides(run) for run in run_dirs}
    searched = varying_keys(list(overrides.values()))
    distributions = infer_distributions(
        {k: [o[k] for o in overrides.values() if k in o] for k in searched}
    )

    study = in_memory_study(folder.name)
    trials = []
    for number, run in enumerate(run_dirs):
        metrics = read_run_metrics(run)
        value = metrics.get("val_loss")
        loss = float(value) if isinstance(value, int | float) else None
        complete = metrics.get("state", "completed") == "completed" and loss is not None
        params = {k: overrides[run][k] for k in searched if k in overrides[run]}
        record = TrialRecord(
            number=number,
            state="COMPLETE" if complete else "FAIL",
            value=loss if complete else None,
            params=params,
            run_dir=run.resolve(),
            metrics=metrics,
        )
        study.add_trial(
            optuna.trial.create_trial(
                params={k: v for k, v in params.items() if k in distributions},
                distributions={k: d for k, d in distributions.items() if k in params},
                value=record.value,
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                user_attrs={RUN_DIR_ATTR: str(record.run_dir)},
            )
        )
        trials.append(record)
    return ReportSource(
        title=_shown_folder(folder), origin=str(folder.resolve()), study=study, trials=trials
    )


def in_memory_study(name: str) -> optuna.Study:
    """An empty in-memory study, without Optuna's "A new study created in memory" line: the
    study is how this folder is read, not something the user created."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(study_name=name, direction="minimize")
    finally:
        optuna.logging.set_verbosity(previous)


def _job_order(run_dir: Path) -> tuple[float, str]:
    """Job folders are 0, 1, ... 10 (or trial_0 ... trial_10): order them by their number."""
    number = re.search(r"(\d+)$", run_dir.name)
    return (int(number.group(1)) if number else math.inf, run_dir.name)


def _shown_folder(folder: Path) -> str:
    """multirun/2026-11-22/10-00-00 → '2026-11-22/10-00-00': the date and time say which sweep."""
    parts = folder.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(folder)


def read_overrides(run_dir: Path) -> dict[str, Any]:
    """The command-line overrides of a run as {key: value}, parsed by Hydra's own parser."""
    import yaml

    lines = yaml.safe_load((run_dir / OVERRIDES_FILE).read_text()) or []
    parsed = OverridesParser.create().parse_overrides(overrides=[str(line) for line in lines])
    values: dict[str, Any] = {}
    for override in parsed:
        if override.is_delete():
            continue
        value = override.value()
        values[override.key_or_group] = (
            value if isinstance(value, str | int | float | bool) or value is None else str(value)
        )
    return values


def varying_keys(overrides: list[dict[str, Any]]) -> list[str]:
    """Keys whose value differs between runs (or is missing in some): what the sweep searched."""
    keys: dict[str, None] = {}
    for run in overrides:
        keys.update(dict.fromkeys(run))
    searched = []
    for key in keys:
        if any(key == prefix or key.startswith(prefix) for prefix in NOT_PARAMETERS):
            continue
        values = {repr(run.get(key)) for run in overrides}
        if len(values) > 1:
            searched.append(key)
    return searched


def infer_distributions(values: dict[str, list[Any]]) -> dict[str, BaseDistribution]:
    """Optuna distributions that cover the values seen: int or float ranges, else categories.

    A range spanning two decades or more is taken as log-scaled, as learning rates are searched.
    """
    distributions: dict[str, BaseDistribution] = {}
    for key, seen in values.items():
        numbers = [v for v in seen if isinstance(v, int | float) and not isinstance(v, bool)]
        if seen and len(numbers) == len(seen) and len(set(numbers)) > 1:
            low, high = min(numbers), max(numbers)
            log = low > 0 and high / low >= 100
            if all(isinstance(v, int) for v in numbers):
                distributions[key] = IntDistribution(int(low), int(high), log=log)
            else:
                distributions[key] = FloatDistribution(float(low), float(high), log=log)
        elif seen:
            choices = tuple(sorted({_choice(v) for v in seen}, key=str))
            distributions[key] = CategoricalDistribution(choices)
    return distributions


def _choice(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
