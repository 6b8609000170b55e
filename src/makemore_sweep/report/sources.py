"""What a report is made of: the trials of an Optuna study, or the runs of a Hydra multirun folder.

Both sources end up as an Optuna study (a multirun folder becomes an in-memory one), so the
figures are the same either way. Trials find their run folder through the user attribute
`run_dir` (the convention the sweeper follows); a run folder holds metrics.json,
csv/metrics.csv, checkpoints/best.ckpt and .hydra/overrides.yaml.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from makemore_sweep.config.sweep_settings import DEV_LOSS
from makemore_sweep.errors import StorageError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper import storage as studies_storage
from makemore_sweep.sweeper.storage import JOURNAL_PREFIX
from makemore_sweep.training.metrics_file import METRICS_FILE

RUN_DIR_ATTR = "run_dir"  # trial user attribute: absolute path of the trial's Hydra output folder
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILE = Path(".hydra") / "config.yaml"
CSV_METRICS = Path("csv") / "metrics.csv"
# Overrides that say where things are or which trial a job is, not what was trained.
NOT_PARAMETERS = ("data.path", "hydra.", "ckpt_path", "threads", "logger", "sweep", "optuna_trial")


@dataclass
class TrialRecord:
    """One trial (or run) with what its run folder says about it."""

    number: int
    state: str  # Optuna's state name: COMPLETE, FAIL, PRUNED, RUNNING, WAITING
    value: float | None  # the dev-loss objective: best dev loss
    params: dict[str, Any]
    run_dir: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = (
        None  # every objective of a complete trial, in the study's order
    )

    def metric(self, key: str) -> Any:
        return self.metrics.get(key)

    @property
    def dev_loss(self) -> float | None:
        """The objective of a complete trial; a pruned or failed run's best dev loss from metrics.json."""
        return self.value if self.value is not None else self.metrics.get("val_loss")

    @property
    def counted(self) -> bool:
        """A counted network's run (the bigram baseline), drawn as a line, not a curve: its
        metrics.json says so; one from before that key is known by its 0 steps."""
        counted = self.metrics.get("counted")
        return bool(counted) if counted is not None else self.metrics.get("steps") == 0


@dataclass
class ReportSource:
    """A study, ready to report on."""

    title: str  # the study name, or the multirun folder
    origin: str  # where it came from (storage URL with its password hidden, or the folder)
    study: optuna.Study
    trials: list[TrialRecord]
    objectives: tuple[str, ...] = (DEV_LOSS,)  # the study's objectives; the dev loss among them

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def pareto_front(self) -> list[int]:
        """Numbers of the trials no other complete trial beats on every objective (Optuna's best_trials)."""
        if not self.multi_objective:
            return [self.best.number] if self.best else []
        return sorted(t.number for t in self.study.best_trials)

    @property
    def param_names(self) -> list[str]:
        names: dict[str, None] = {}
        for trial in self.trials:
            names.update(dict.fromkeys(trial.params))
        return list(names)

    @property
    def completed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]

    @property
    def best(self) -> TrialRecord | None:
        return min(self.completed, key=lambda t: t.value, default=None)  # type: ignore[arg-type,return-value]

    def ranked(self) -> list[TrialRecord]:
        """Trials with a dev loss first, best first; then the others by number."""
        return sorted(self.trials, key=lambda t: (t.value is None, t.value or 0.0, t.number))

    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        return counts


# -- Optuna storage ----------------------------------------------------------------------------
def journal_file(storage: str) -> Path | None:
    """The file of a journal storage: `journal:PATH` (as sweeps write it) or a bare file path."""
    if storage.startswith(JOURNAL_PREFIX):
        return studies_storage.journal_path(storage).expanduser()
    return None if "://" in storage else Path(storage).expanduser()


def open_storage(storage: str) -> optuna.storages.BaseStorage:
    """An existing Optuna storage, read as it is: a database URL or a journal file.

    Database URLs: sqlite:///FILE, postgresql://..., mysql://...; journal files: journal:PATH
    or just PATH. Refuses files that do not exist, which opening would silently create empty;
    the opening itself (and its one-sentence errors) is `storage.open_storage`.
    """
    shown = mask_secrets(storage)
    if (path := journal_file(storage)) is not None:
        if not path.is_file():
            raise StorageError(
                f"The Optuna storage {shown} is neither a database URL nor an existing journal file."
            )
        storage = f"{JOURNAL_PREFIX}{path.resolve()}"
    else:
        try:
            url = make_url(storage)
        except Exception as error:
            raise StorageError(
                f"The Optuna storage URL {shown} cannot be parsed ({error})."
            ) from error
        on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if on_disk and not Path(url.database).is_file():  # type: ignore[arg-type]
            raise StorageError(
                f"The Optuna storage {shown} does not exist: no file at {url.database}."
            )
    opened = studies_storage.open_storage(storage)
    assert opened is not None  # the URL is not empty here
    return opened


def load_study_source(storage_url: str, study_name: str | None) -> ReportSource:
    """A study from its storage; with no name, the storage's only study."""
    storage = open_storage(storage_url)
    names = optuna.get_all_study_names(storage)
    shown = mask_secrets(storage_url)
    if study_name is None:
        if len(names) != 1:
            listing = ", ".join(names) if names else "none"
            raise StorageError(
                f"Name the study with --study: the storage {shown} holds {len(names)} studies ({listing})."
            )
        study_name = names[0]
    if study_name not in names:
        listing = ", ".join(sorted(names)) if names else "no studies at all"
        raise StorageError(
            f"The storage {shown} has no study named {study_name!r} (it has {listing})."
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    objectives = objective_names(study)
    dev = objectives.index(DEV_LOSS) if DEV_LOSS in objectives else 0
    trials = [_record_from_trial(t, dev) for t in study.get_trials(deepcopy=False)]
    return ReportSource(
        title=study_name, origin=shown, study=study, trials=trials, objectives=objectives
    )


def objective_names(study: optuna.Study) -> tuple[str, ...]:
    """The metric names a sweep gave its objectives; a study without them is taken as dev loss first."""
    names = study.metric_names
    if names:
        return tuple(names)
    return (DEV_LOSS, *(f"objective {i}" for i in range(1, len(study.directions))))


def _record_from_trial(trial: FrozenTrial, dev_index: int) -> TrialRecord:
    run_dir = trial.user_attrs.get(RUN_DIR_ATTR)
    path = Path(run_dir) if run_dir else None
    metrics = read_run_metrics(path) if path else {}
    values = (
        tuple(trial.values)
        if trial.state == TrialState.COMPLETE and trial.values is not None
        else None
    )
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=values[dev_index] if values is not None else None,
        params=dict(trial.params),
        run_dir=path,
        metrics=metrics,
        values=values,
    )


# -- run folders -------------------------------------------------------------------------------------
def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json of a run, or {} when the run never wrote one (it is still running, or crashed)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_config(run_dir: Path) -> dict[str, Any]:
    """The composed config a run saved, as plain YAML (its ${hydra:...} interpolations left unresolved)."""
    import yaml

    try:
        return yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def dev_loss_curve(trial: TrialRecord) -> list[tuple[int, float]]:
    """(step, dev loss) points from the run's CSV log; metrics.json's val_history when there is no CSV."""
    points: list[tuple[int, float]] = []
    if trial.run_dir is not None and (trial.run_dir / CSV_METRICS).is_file():
        with (trial.run_dir / CSV_METRICS).open(newline="") as handle:
            for row in csv.DictReader(handle):
                value, step = row.get("val_loss"), row.get("step")
                if value and step:
                    points.append((int(float(step)), float(value)))
    if not points:
        points = [(int(s), float(v)) for s, v in trial.metrics.get("val_history") or []]
    return points
