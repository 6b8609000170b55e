"""What a sweep shows and keeps: its console lines, optimization_results.yaml, the exported trials.

Runs in the sweep process (`driver.py`), which prints the plan, one line per finished trial and
the best trial (or the Pareto front) at the end, then writes the results file and the chosen
trials as experiment configs: `makemore-train experiment=<study>_best` (or `<study>_pareto_<trial>`
for each trial on a multi-objective study's Pareto front).

An exported experiment holds every value in which the trial's configuration differs from the
default one (conf/train.yaml alone): the searched parameters, the sweep file's settings such as
the step budget, and the fixed command-line overrides. Interpolations are kept unresolved, so run
folders and the like still follow the new run. Its header names the study that wrote it,
and a sweep of another study is refused before it would write over it (`check_exports`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import optuna
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.errors import ConfigError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.claims import (
    CONTINUED_ATTR,
    CONTINUED_REASON_ATTR,
    FAIL_REASON_ATTR,
    OWNER_ATTR,
)
from makemore_sweep.sweeper.study import SearchSpace, finished
from makemore_sweep.training.metrics_file import METRICS_FILE, read_metrics

log = logging.getLogger(__name__)

WATCH_S = 1.0  # how often the sweep process looks at the study while workers run

# --- the console ----------------------------------------------------------------------------------


def format_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{name}={_short(value)}" for name, value in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _loss(value: Any) -> str:
    return "—" if value is None else f"{float(value):.4f}"


def best_completed(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial (Optuna's `best_trial` raises when there is none)."""
    try:
        return study.best_trial
    except ValueError:
        return None


class SweepPrinter:
    """Plain lines on stdout: readable in a terminal, a CI log and a SLURM output file alike."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def plan(
        self,
        study: optuna.Study,
        storage_label: str,
        n_trials: int,
        counts: Mapping[TrialState, int],
    ) -> None:
        """The first line: what the study holds and what this run will do about it."""
        done, failed, running = (
            finished(counts),
            counts[TrialState.FAIL],
            counts[TrialState.RUNNING],
        )
        where = f"[sweep] study {study.study_name} in {storage_label}:"
        if not done + failed + running:
            self.say(f"{where} {n_trials} trials in total")
            return
        held = (
            f"{done} finished"
            + (f", {failed} failed" if failed else "")
            + (f", {running} unfinished" if running else "")
        )
        if done < n_trials:
            continued = f", {running} of them continued" if running else ""
            self.say(
                f"{where} n_trials={n_trials}, resuming: {held}; {n_trials - done} to run{continued}"
            )
        else:
            self.say(f"{where} {held}, n_trials={n_trials}: nothing to run")

    def continued(self, number: int, reason: str) -> None:
        self.say(f"[trial {number}] CONTINUED ({reason})")

    def trial_finished(self, trial: FrozenTrial, study: optuna.Study) -> None:
        if len(study.directions) > 1:
            self._trial_on_front(trial, study)
            return
        best = best_completed(study)
        best_text = "best —" if best is None else f"best {_loss(best.value)} (trial {best.number})"
        if trial.state == TrialState.COMPLETE:
            outcome = f"COMPLETE dev {_loss(trial.value)}"
        elif trial.state == TrialState.PRUNED:
            at = trial.user_attrs.get("pruned_at_step", trial.last_step)
            outcome = f"PRUNED   dev {_loss(trial.value)} at step {at}"
        else:
            outcome = f"{trial.state.name:<8} {trial.user_attrs.get(FAIL_REASON_ATTR, '')}"
        self.say(f"[trial {trial.number}] {outcome} | {best_text} | {format_params(trial.params)}")

    def best(self, study: optuna.Study, counts: Mapping[TrialState, int]) -> FrozenTrial | None:
        states = ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n)
        self.say(f"[sweep] study {study.study_name}: {states}")
        best = best_completed(study)
        if best is None:
            self.say("[sweep] no trial completed, so there is no best trial yet")
            return None
        test_loss = best_run_metrics(best).get("test_loss", best.user_attrs.get("test_loss"))
        self.say(
            f"[sweep] best trial {best.number}: dev {_loss(best.value)}, test {_loss(test_loss)}"
        )
        self.say(f"[sweep]   params: {format_params(best.params)}")
        if best.user_attrs.get("run_dir"):
            self.say(f"[sweep]   run: {best.user_attrs['run_dir']}")
        return best

    def _trial_on_front(self, trial: FrozenTrial, study: optuna.Study) -> None:
        front = {t.number for t in study.best_trials}
        if trial.state == TrialState.COMPLETE:
            place = "on the front" if trial.number in front else "behind the front"
            outcome = f"COMPLETE {objective_text(study, trial)} ({place})"
        else:
            outcome = f"{trial.state.name:<8} {trial.user_attrs.get(FAIL_REASON_ATTR, '')}"
        self.say(
            f"[trial {trial.number}] {outcome} | front: {len(front)} trials | {format_params(trial.params)}"
        )

    def pareto_front(
        self, study: optuna.Study, counts: Mapping[TrialState, int]
    ) -> list[FrozenTrial]:
        """Print the Pareto front of a multi-objective study (by its first objective); return it."""
        states = ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n)
        self.say(f"[sweep] study {study.study_name}: {states}")
        front = sorted(study.best_trials, key=lambda t: (t.values[0], t.number))
        names = objective_names(study)
        directions = ", ".join(
            f"{name} ({d.name.lower()})" for name, d in zip(names, study.directions)
        )
        self.say(f"[sweep] Pareto front over {directions}: {len(front)} trials")
        for trial in front:
            test = (
                "" if "test_loss" in names else f", test {_loss(trial.user_attrs.get('test_loss'))}"
            )
            self.say(
                f"[sweep]   trial {trial.number}: {objective_text(study, trial)}{test} | {format_params(trial.params)}"
            )
        return front


class StudyWatcher:
    """Prints a line for each trial that ends (or is continued) while the workers run."""

    def __init__(self, study: optuna.Study, sweep_id: str, printer: SweepPrinter) -> None:
        self.study, self.sweep_id, self.printer = study, sweep_id, printer
        trials = study.get_trials(deepcopy=False)
        self.printed = {t.number for t in trials if t.state.is_finished()}
        self.held: dict[int, tuple[int, int | None]] = {}  # worker → (trial, last step reported)
        self.times_continued = {t.number: int(t.user_attrs.get(CONTINUED_ATTR, 0)) for t in trials}

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(WATCH_S):
            self._poll_safely()
        self._poll_safely()  # what ended since the last look

    def _poll_safely(self) -> None:
        try:
            self.poll()
        except Exception as error:  # noqa: BLE001 - a busy storage: the next look will do
            log.debug("Watching the study failed: %s", error)

    def poll(self) -> None:
        held: dict[int, tuple[int, int | None]] = {}
        for trial in self.study.get_trials(deepcopy=False):
            owner = trial.user_attrs.get(OWNER_ATTR) or {}
            if trial.state == TrialState.RUNNING and owner.get("sweep_id") == self.sweep_id:
                held[int(owner.get("worker", -1))] = (trial.number, trial.last_step)
            times = int(trial.user_attrs.get(CONTINUED_ATTR, 0))
            if times > self.times_continued.get(trial.number, 0):
                self.times_continued[trial.number] = times
                self.printer.continued(
                    trial.number, str(trial.user_attrs.get(CONTINUED_REASON_ATTR, ""))
                )
            if trial.state.is_finished() and trial.number not in self.printed:
                self.printed.add(trial.number)
                self.printer.trial_finished(trial, self.study)
        # A worker's trial, as last seen: kept when it disappears with a dead worker's takeover.
        for worker, trial_and_step in held.items():
            self.held[worker] = trial_and_step
        for worker in [w for w, (n, _) in self.held.items() if n in self.printed]:
            del self.held[worker]


def objective_names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])


def objective_text(study: optuna.Study, trial: FrozenTrial) -> str:
    return ", ".join(
        f"{name} {_figure(value)}" for name, value in zip(objective_names(study), trial.values)
    )


def _figure(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4f}"


def best_run_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's metrics.json when its run folder is reachable from here (it may be on another host)."""
    run_dir = trial.user_attrs.get("run_dir")
    if not run_dir or not (Path(run_dir) / METRICS_FILE).is_file():
        return {}
    try:
        return read_metrics(Path(run_dir))
    except (OSError, ValueError):
        return {}


# --- the results file -----------------------------------------------------------------------------

RESULTS_FILE = "optimization_results.yaml"


def save_results(
    config: DictConfig, study: optuna.Study, best: FrozenTrial | None, url: str
) -> Path:
    """optimization_results.yaml in the sweep folder, as the upstream plugin writes it."""
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": mask_secrets(url),
    }
    if best is not None:
        results.update(best_params=dict(best.params), best_value=best.value, best_trial=best.number)
    return _write(config, results)


def save_pareto_results(
    config: DictConfig, study: optuna.Study, front: list[FrozenTrial], url: str
) -> Path:
    """optimization_results.yaml of a multi-objective sweep: its Pareto front as upstream writes it
    (`solutions`: params and values), with each trial's number and the objectives' names."""
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": mask_secrets(url),
        "objectives": list(study.metric_names or []),
        "directions": [d.name.lower() for d in study.directions],
        "solutions": [
            {"trial": t.number, "params": dict(t.params), "values": list(t.values)} for t in front
        ],
    }
    return _write(config, results)


def _write(config: DictConfig, results: dict[str, Any]) -> Path:
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
    return sweep_dir / RESULTS_FILE


# --- experiments ----------------------------------------------------------------------------------

# Set per trial by the sweeper or per run by Hydra: not part of what the trial trained.
NOT_EXPORTED = ("hydra", "optuna_trial")
_MISSING = object()
OWNER_LINE = "Study: "  # an exported experiment's header line naming its study
LABELS = {"val_loss": "dev", "test_loss": "test"}  # how an experiment's header names the losses


def experiment_name(study_name: str) -> str:
    return _safe(f"{study_name}_best")


def pareto_experiment_name(study_name: str, trial_number: int) -> str:
    """The experiment of one trial on a multi-objective study's Pareto front."""
    return _safe(f"{study_name}_pareto_{trial_number}")


def exported_names(study_name: str) -> list[str]:
    """Glob patterns of every experiment a sweep of this study may write (best and Pareto front)."""
    return [experiment_name(study_name), f"{_safe(f'{study_name}_pareto_')}*"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def export_experiment(
    config: DictConfig,
    hydra_context: HydraContext,
    study: optuna.Study,
    trial: FrozenTrial,
    space: SearchSpace,
    export_dir: str | None,
    name: str,
    study_label: str,
) -> tuple[Path, str]:
    """Write `trial` as `<export dir>/<name>.yaml`; return its path and experiment name."""
    loader = hydra_context.config_loader
    trial_config = loader.load_sweep_config(config, space.trial_overrides(trial.params))
    default_config = loader.load_configuration(
        config_name=config.hydra.job.config_name, overrides=[], run_mode=RunMode.RUN
    )
    directory = Path(export_dir) if export_dir else experiment_export_dir()
    names = study.metric_names or ["val_loss"]
    figures = [
        f"{LABELS.get(key, key)} {_header_figure(value)}" for key, value in zip(names, trial.values)
    ]
    if "test_loss" not in names:
        figures.append(f"test {_header_figure(trial.user_attrs.get('test_loss', float('nan')))}")
    kind = "Pareto-front trial" if len(trial.values) > 1 else "Best trial"
    header = [
        f"{kind} {trial.number} of Optuna study {study.study_name}: {', '.join(figures)}.",
        f"Written by the sweeper; reproduce it with: makemore-train experiment={name}",
        owner_header_line(study_label),
    ]
    changes = config_changes(trial_config, default_config, always=list(trial.params))
    choice = OmegaConf.select(trial_config, MODEL_CHOICE)
    if choice is not None and choice != OmegaConf.select(default_config, MODEL_CHOICE):
        # Another network than the default's: its option, and its whole node (a diff against the
        # default network's node could not say which of that node's keys it does not have).
        model = OmegaConf.to_container(trial_config.model, resolve=False)
        changes = {"defaults": [{"override /model": choice}], **changes, "model": model}
    return write_experiment(directory, name, changes, header), name


MODEL_CHOICE = "hydra.runtime.choices.model"  # the `model=` option a config was composed with


def _header_figure(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.4f}"


def config_changes(
    config: DictConfig, baseline: DictConfig, always: Sequence[str] = ()
) -> dict[str, Any]:
    """The values of `config` that `baseline` does not have, as a nested dict.

    `always` lists dotted keys (the searched parameters) written even when they equal the
    baseline, so the experiment reads as the sweep's answer; config-group choices among them
    (`model=mlp`) are left to the diff of the values they select.
    """
    ours = OmegaConf.to_container(config, resolve=False)
    theirs = OmegaConf.to_container(baseline, resolve=False)
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    for key in NOT_EXPORTED:
        ours.pop(key, None)
    changes = _diff(ours, theirs)
    for dotted in always:
        key = dotted.lstrip("+~")
        value = OmegaConf.select(config, key, default=_MISSING, throw_on_resolution_failure=False)
        if value is _MISSING or OmegaConf.is_config(value):
            continue
        node = changes
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return changes


def _diff(ours: dict[Any, Any], theirs: dict[Any, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in ours.items():
        other = theirs.get(key, _MISSING)
        if isinstance(value, dict) and isinstance(other, dict):
            nested = _diff(value, other)
            if nested:
                changes[key] = nested
        elif value != other:
            changes[key] = value
    return changes


def write_experiment(
    directory: Path, name: str, changes: dict[str, Any], header: list[str]
) -> Path:
    """Write `<directory>/<name>.yaml` as a global-package experiment; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    comments = "".join(f"# {line}\n" for line in header)
    body = OmegaConf.to_yaml(OmegaConf.create(changes)) if changes else "{}\n"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(f"# @package _global_\n{comments}{body}")
    tmp.replace(path)
    return path


def check_exports(directory: Path, names: list[str], label: str) -> None:
    """Refuse when an experiment this sweep would export was written by another study."""
    for path in sorted(p for pattern in names for p in directory.glob(f"{pattern}.yaml")):
        owner = exported_by(path)
        if owner is not None and owner != label:
            raise ConfigError(
                f"{path} was exported by study {owner}, not by this sweep's study {label}; give this study "
                "another hydra.sweeper.study_name (or another hydra.sweeper.export_dir)."
            )


def exported_by(path: Path) -> str | None:
    """The study named in an exported experiment's header, None for files written before it was."""
    prefix = f"# {OWNER_LINE}"
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    return None
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    except OSError:
        return None
    return None


def owner_header_line(label: str) -> str:
    return f"{OWNER_LINE}{label}"
