"""One path from claim to tell (issue 25): the run reports and stops, its runner tells the study.

Real Optuna studies in SQLite files; the ends are the ones a worker and a pack see.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from makemore_sweep.sweeper.claims import (
    FAIL_REASON_ATTR,
    HOST,
    OWNER_ATTR,
    TrialEnd,
    TrialLeases,
    TrialSource,
    hand_back,
    tell_outcome,
)
from makemore_sweep.sweeper.runners import attempt_metrics
from makemore_sweep.sweeper.storage import claim_lock, open_sweep_storage
from makemore_sweep.sweeper.study import build_pruner, build_search_space
from makemore_sweep.sweeper.trial_hook import TrialReporter, handed_to_run

SWEEPER = Path(__file__).resolve().parents[1] / "src" / "makemore_sweep"


def a_study(tmp_path: Path) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    storage = open_sweep_storage(f"sqlite:///{tmp_path}/s.db")
    pruner = build_pruner("median", {"median": {"n_startup_trials": 0, "n_warmup_steps": 0}})
    return optuna.create_study(study_name="s", storage=storage, pruner=pruner), storage


def finished_job(value: float) -> JobReturn:
    job = JobReturn(status=JobStatus.COMPLETED)
    job.return_value = value
    return job


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def metrics_of(run_dir: Path, **fields: object) -> dict[str, object]:
    metrics = {"val_loss": 2.1, "test_loss": 2.2, "n_params": 100, "steps": 50, **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def test_a_completed_run_is_told_complete_with_its_figures(tmp_path: Path) -> None:
    study, storage = a_study(tmp_path)
    trial = study.ask()
    run_dir = tmp_path / "trial_0"
    metrics_of(run_dir, state="completed")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    end = TrialEnd.of_job(finished_job(2.1), metrics, run_dir)
    told = tell_outcome(study, storage, trial._trial_id, end)
    assert told.state == TrialState.COMPLETE and told.value == 2.1
    assert told.user_attrs["test_loss"] == 2.2 and told.user_attrs["state"] == "completed"
    assert told.user_attrs["run_dir"] == str(run_dir.resolve())


def test_a_pruned_run_is_told_pruned_with_its_last_report(tmp_path: Path) -> None:
    """The run only reported and stopped; its metrics.json says `pruned`, and the runner tells."""
    study, storage = a_study(tmp_path)
    done = study.ask()
    done.report(1.0, 10)
    study.tell(done, 1.0)
    trial = study.ask()
    reporter = TrialReporter(study, optuna.trial.Trial(study, trial._trial_id))
    reporter.validated(10, 3.0, max_steps=100)  # worse than the median: pruned, not told
    assert reporter.stopped_early
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    run_dir = tmp_path / "trial_1"
    metrics = metrics_of(run_dir, state="pruned", pruned_at_step=10)
    told = tell_outcome(study, storage, trial._trial_id, TrialEnd(3.0, None, metrics, run_dir))
    assert told.state == TrialState.PRUNED and told.value == 3.0
    assert told.user_attrs["pruned_at_step"] == 10


def test_a_failed_job_is_told_fail_with_its_reason_and_its_record(tmp_path: Path) -> None:
    study, storage = a_study(tmp_path)
    trial = study.ask()
    run_dir = tmp_path / "trial_0"
    metrics = metrics_of(run_dir, state="failed", val_loss=None)
    end = TrialEnd.of_job(RuntimeError("diverged at step 7"), metrics, run_dir)
    told = tell_outcome(study, storage, trial._trial_id, end)
    assert told.state == TrialState.FAIL
    assert told.user_attrs[FAIL_REASON_ATTR] == "RuntimeError: diverged at step 7"
    assert told.user_attrs["state"] == "failed"


def test_a_job_elsewhere_is_told_by_its_own_attempts_record_only(tmp_path: Path) -> None:
    """An earlier attempt's metrics.json in the same folder (its process died before the tell)
    is not this attempt's outcome: the token each attempt carries tells them apart."""
    run_dir = tmp_path / "trial_0"
    metrics_of(run_dir, state="pruned", optuna_attempt="earlier")
    assert attempt_metrics(run_dir, "this") is None
    metrics_of(run_dir, state="completed", optuna_attempt="this")
    written = attempt_metrics(run_dir, "this")
    assert written is not None and written["state"] == "completed"
    assert attempt_metrics(tmp_path / "never_ran", "this") is None


def test_a_worker_stopped_with_ended_trials_tells_them_and_releases_the_others(
    tmp_path: Path,
) -> None:
    study, storage = a_study(tmp_path)
    pruned, running, ended = study.ask(), study.ask(), study.ask()
    pruned.report(2.5, 10)
    leases = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    for trial in (pruned, running, ended):
        leases.claim(trial._trial_id)
    hand_back(study, leases, pruned._trial_id, {"state": "pruned", "steps": 10}, None)
    hand_back(study, leases, running._trial_id, {"state": "interrupted", "steps": 20}, None)
    # Stopped while closing its loggers: its run had ended, so it is told, not run again.
    hand_back(study, leases, ended._trial_id, {"state": "completed", "val_loss": 2.05}, None)
    assert storage.get_trial(pruned._trial_id).state == TrialState.PRUNED
    assert storage.get_trial(ended._trial_id).state == TrialState.COMPLETE
    assert storage.get_trial(ended._trial_id).value == 2.05
    handed = storage.get_trial(running._trial_id)
    assert handed.state == TrialState.RUNNING and handed.user_attrs["state"] == "interrupted"
    assert handed.user_attrs[OWNER_ATTR]["released"] is True  # the next worker continues it


def test_a_trial_finished_elsewhere_is_kept_as_it_is(tmp_path: Path) -> None:
    study, storage = a_study(tmp_path)
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)  # failed as abandoned by another process
    told = tell_outcome(study, storage, trial._trial_id, TrialEnd(returned=2.0))
    assert told.state == TrialState.FAIL and "val_loss" not in told.user_attrs


def test_a_worker_hands_its_trial_to_the_run_as_an_object(tmp_path: Path) -> None:
    study, _ = a_study(tmp_path)
    trial = study.ask()
    reporter = TrialReporter(study, optuna.trial.Trial(study, trial._trial_id))
    cfg = OmegaConf.create({"optuna_trial": {"number": trial.number, "study_name": "s"}})
    with handed_to_run(reporter):
        assert TrialReporter.from_config(cfg) is reporter  # no second study, storage or pruner
    assert TrialReporter.from_config(OmegaConf.create({})) is None  # not a trial


def test_a_batch_is_taken_under_the_claim_lock_abandoned_trials_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    storage = open_sweep_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    space = build_search_space({"optim.lr": "interval(0.001, 0.1)"}, [])
    orphan = study.ask(space.distributions)
    orphan.set_user_attr(OWNER_ATTR, {"host": HOST, "pid": dead_pid(), "token": "k"})
    leases = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    taken: list[str] = []

    def lock():  # type: ignore[no-untyped-def]
        taken.append("lock")
        return claim_lock(url, storage, "s")

    source = TrialSource(study, storage, leases, space, OmegaConf.create({}), 3, lock)
    batch = source.next_batch(5)
    assert [c.number for c in batch] == [0, 1, 2]  # the abandoned one, then new ones to n_trials
    assert batch[0].continued_because is not None and batch[1].continued_because is None
    assert taken == ["lock"]  # one hold of the lock for the whole batch
    assert source.next_batch(5) == []


def test_exactly_one_module_tells_the_study() -> None:
    tellers = set()
    for path in SWEEPER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "tell":
                tellers.add(path.relative_to(SWEEPER).as_posix())
    assert tellers == {"sweeper/claims.py"}
