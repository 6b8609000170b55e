"""What a sweep prints: its plan, one line per finished trial, and the best trial at the end."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.sweeper.leases import FAIL_REASON_ATTR
from makemore_sweep.training.metrics_file import METRICS_FILE, read_metrics


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


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def finished(counts: Mapping[TrialState, int]) -> int:
    """Trials that count toward n_trials: completed or pruned (failed ones are replaced)."""
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]


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

    def continued(self, number: int, reason: str, by: str = "") -> None:
        self.say(f"[trial {number}] CONTINUED{by} ({reason})")

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
