"""The sweep's parts on their own: storage URLs, pruners, thread split, leases, best-config export.

Fast (no training); a real SQLite Optuna storage and real processes where they matter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.cli.train import selects_sweep
from makemore_sweep.cluster.local_launcher import split_threads
from makemore_sweep.errors import ConfigError, StorageError
from makemore_sweep.sweeper.claims import (
    HEARTBEAT_ATTR,
    HOST,
    OWNER_ATTR,
    TrialLeases,
    TrialSource,
    process_is_alive,
)
from makemore_sweep.sweeper.results import config_changes, experiment_name, write_experiment
from makemore_sweep.sweeper.storage import (
    claim_lock,
    open_sweep_storage,
    resolve_storage_url,
    with_installed_postgres_driver,
)
from makemore_sweep.sweeper.study import build_pruner, build_search_space
from makemore_sweep.sweeper.worker import StopRequest


# -- storage --------------------------------------------------------------------------------
def test_default_storage_is_an_sqlite_file_under_the_run_folder(tmp_path: Path) -> None:
    assert (
        resolve_storage_url(None, "s1", tmp_path) == f"sqlite:///{tmp_path.resolve()}/studies/s1.db"
    )


def test_relative_file_storages_become_absolute_and_others_are_kept(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    assert resolve_storage_url("sqlite:///db/x.db", "s", tmp_path) == f"sqlite:///{base}/db/x.db"
    assert resolve_storage_url("sqlite:////abs/x.db", "s", tmp_path) == "sqlite:////abs/x.db"
    assert (
        resolve_storage_url("journal:studies/x.log", "s", tmp_path)
        == f"journal:{base}/studies/x.log"
    )
    assert resolve_storage_url("journal:///abs/x.log", "s", tmp_path) == "journal:/abs/x.log"
    url = "postgresql://user:pw@db.example:5432/optuna"
    assert resolve_storage_url(url, "s", tmp_path) == url


def test_journal_and_sqlite_storages_open_and_hold_a_study(tmp_path: Path) -> None:
    for url in (f"journal:{tmp_path}/j/s.log", f"sqlite:///{tmp_path}/q/s.db"):
        (tmp_path / url.rsplit("/", 2)[1]).mkdir()
        study = optuna.create_study(study_name="s", storage=open_sweep_storage(url))
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        assert len(optuna.load_study(study_name="s", storage=open_sweep_storage(url)).trials) == 2


def test_an_unusable_storage_is_one_sentence_without_its_password(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as error:
        open_sweep_storage(f"sqlite:///{blocker}/sub/s.db")
    assert "hydra.sweeper.storage" in str(error.value)
    with pytest.raises(StorageError) as error:
        open_sweep_storage("nosuchdialect://user:hunter2@localhost/db")
    assert "hunter2" not in str(error.value) and "user:***@" in str(error.value)


def test_plain_postgresql_urls_use_whichever_driver_is_installed() -> None:
    url = with_installed_postgres_driver("postgresql://u:p@h/db")
    assert url in ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db")
    assert with_installed_postgres_driver("sqlite:///x.db") == "sqlite:///x.db"


# -- pruners --------------------------------------------------------------------------------
def test_pruners_are_built_by_name_with_their_options() -> None:
    assert isinstance(
        build_pruner("median", {"median": {"n_startup_trials": 2}}), optuna.pruners.MedianPruner
    )
    assert isinstance(build_pruner("hyperband", {}), optuna.pruners.HyperbandPruner)
    assert isinstance(build_pruner("none", None), optuna.pruners.NopPruner)


def test_unknown_pruners_and_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.pruner=bogus is invalid"):
        build_pruner("bogus", {})
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.pruner_options\.median"):
        build_pruner("median", {"median": {"no_such_option": 1}})


def test_the_patient_pruner_wraps_a_median_pruner_with_the_rest_of_its_options() -> None:
    options = {"patience": 3, "min_delta": 0.01, "n_startup_trials": 8, "n_warmup_steps": 1500}
    pruner = build_pruner("patient", {"patient": options})
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    assert (pruner._patience, pruner._min_delta) == (3, 0.01)
    median = pruner._wrapped_pruner
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (8, 1500)
    assert options["patience"] == 3, "the caller's options are left as they were"


@pytest.mark.parametrize(
    "options", [{"min_delta": 0.0}, {"patience": -1}, {"patience": 2, "no_such_option": 1}]
)
def test_bad_patient_options_name_the_key(options: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"hydra\.sweeper\.pruner_options\.patient=.* is invalid: "
    ):
        build_pruner("patient", {"patient": options})


# -- launching ------------------------------------------------------------------------------
def test_parallel_jobs_share_the_cores_without_overriding_an_explicit_setting() -> None:
    jobs = split_threads([["a=1"], ["a=2", "threads=3"], ["a=3"]], cores=8)
    assert jobs == [["a=1", "threads=2"], ["a=2", "threads=3"], ["a=3", "threads=2"]]
    assert split_threads([["a=1"], ["a=2"], ["a=3"]], cores=2)[0][-1] == "threads=1"


def test_choosing_a_sweep_file_switches_to_multirun_unless_a_mode_is_given() -> None:
    assert selects_sweep(["sweep=beat_2p2", "hydra.sweeper.n_trials=4"])
    assert not selects_sweep(["sweep=beat_2p2", "-m"])
    assert not selects_sweep(["sweep=null"])
    assert not selects_sweep(["model.n_hidden=100"])


# -- leases: which RUNNING trials are abandoned --------------------------------------------
def owned_by(leases: TrialLeases, trial: FrozenTrial) -> bool:
    """The trial's claim is this process's lease, and not released."""
    owner = trial.user_attrs.get(OWNER_ATTR) or {}
    return owner.get("token") == leases.owner["token"] and not owner.get("released")


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_process_liveness() -> None:
    assert process_is_alive(os.getpid())
    assert not process_is_alive(dead_pid())


def test_trials_of_a_dead_process_are_abandoned_and_live_ones_are_kept(tmp_path: Path) -> None:
    storage = open_sweep_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    mine, killed, other_host, unclaimed, released = (study.ask() for _ in range(5))
    leases = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    leases.claim(leases.trial_id(mine.number))
    killed.set_user_attr(
        OWNER_ATTR, {"host": HOST, "pid": dead_pid(), "sweep_id": "gone", "token": "k"}
    )
    other_host.set_user_attr(
        OWNER_ATTR, {"host": f"not-{HOST}", "pid": 1, "sweep_id": "far", "token": "o"}
    )
    released.set_user_attr(
        OWNER_ATTR, {"host": HOST, "pid": os.getpid(), "token": "r", "released": True}
    )

    abandoned = {a.number: a.reason for a in leases.abandoned()}

    assert set(abandoned) == {killed.number, released.number}
    assert unclaimed.number not in abandoned  # just asked: still within its claim window
    assert "is gone" in abandoned[killed.number]
    # Abandoned trials are continued, not failed: nothing changed state.
    assert {t.state for t in study.get_trials()} == {TrialState.RUNNING}


def test_an_abandoned_trial_is_taken_over_by_one_process_only(tmp_path: Path) -> None:
    storage = open_sweep_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.set_user_attr(OWNER_ATTR, {"host": HOST, "pid": dead_pid(), "token": "k"})
    first = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    second = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    (seen_by_first,), (seen_by_second,) = first.abandoned(), second.abandoned()
    assert first.take_over(seen_by_first)
    # The second saw it abandoned too, a moment before: it is taken only as it was seen.
    assert not second.take_over(seen_by_second)
    # Now owned by a live process (this one, with a beating heartbeat): not abandoned any more.
    assert second.abandoned() == []
    assert owned_by(first, study.trials[trial.number])
    assert study.trials[trial.number].state == TrialState.RUNNING  # same number, same trial


def test_a_trial_asked_but_never_claimed_is_abandoned_after_the_claim_window(
    tmp_path: Path,
) -> None:
    """A sweep killed between study.ask() and its claim leaves an orphan, which is then continued."""
    storage = open_sweep_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    orphan, claimed_later = study.ask(), study.ask()
    leases = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30, claim_window_s=0.3)
    assert {t.number for t in leases.unclaimed_running()} == {orphan.number, claimed_later.number}
    assert leases.abandoned() == []  # first sight: the window starts now, on this process's clock
    claimed_later.set_user_attr(OWNER_ATTR, {"host": HOST, "pid": os.getpid(), "token": "live"})
    time.sleep(0.5)

    abandoned = leases.abandoned()

    assert [a.number for a in abandoned] == [orphan.number]
    assert "never claimed" in abandoned[0].reason


def test_hosts_with_skewed_clocks_never_abandon_each_others_live_trials(tmp_path: Path) -> None:
    """Issue 13 item 6: only the storage's own records and our monotonic clock are compared."""
    storage = open_sweep_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    study_id = storage.get_study_id_from_name("s")
    # A trial asked by a host whose clock runs a day behind (or ahead) of ours.
    skewed = [
        storage.create_new_trial(
            study_id,
            template_trial=FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.now() + shift,
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            ),
        )
        for shift in (timedelta(days=-1), timedelta(days=1))
    ]
    far_owner = {"host": f"not-{HOST}", "pid": 1, "sweep_id": "far", "token": "far"}
    for trial_id in skewed:
        storage.set_trial_user_attr(trial_id, OWNER_ATTR, far_owner)
    leases = TrialLeases(study, storage, heartbeat_interval=0.1, grace_period=0.6)
    beats = 0
    for _ in range(8):  # 1.2 s, twice the grace period: the far host keeps beating for both
        beats += 1
        for trial_id in skewed:
            storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, beats)
        assert leases.abandoned() == []
        time.sleep(0.15)
    # The far host stops beating for one of them: abandoned once the grace period passed here.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not leases.abandoned():
        storage.set_trial_user_attr(skewed[1], HEARTBEAT_ATTR, beats := beats + 1)
        time.sleep(0.15)
    [abandoned] = leases.abandoned()
    assert abandoned.number == storage.get_trial_number_from_id(skewed[0])
    assert "no heartbeat" in abandoned.reason


def test_journal_trials_whose_heartbeat_stopped_are_abandoned(tmp_path: Path) -> None:
    storage = open_sweep_storage(f"journal:{tmp_path}/s.log")
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.set_user_attr(
        OWNER_ATTR, {"host": f"not-{HOST}", "pid": 1, "sweep_id": "far", "token": "far"}
    )
    trial.set_user_attr(HEARTBEAT_ATTR, 7)
    leases = TrialLeases(study, storage, heartbeat_interval=0.1, grace_period=0.3)
    assert leases.abandoned() == []
    time.sleep(0.5)
    assert [a.number for a in leases.abandoned()] == [trial.number]


# -- the best trial as an experiment -------------------------------------------------------
def test_the_best_config_keeps_what_differs_and_the_searched_parameters(tmp_path: Path) -> None:
    default = OmegaConf.create(
        {
            "model": {"n_embd": 10, "n_hidden": 200},
            "trainer": {"max_steps": 4000},
            "x": "${model.n_embd}",
        }
    )
    trial = OmegaConf.create(
        {
            "model": {"n_embd": 10, "n_hidden": 300},
            "trainer": {"max_steps": 3000},
            "x": "${model.n_embd}",
            "optuna_trial": {"number": 3},
            "hydra": {"mode": "MULTIRUN"},
        }
    )
    changes = config_changes(trial, default, always=["model.n_embd", "model.n_hidden"])
    assert changes == {"model": {"n_embd": 10, "n_hidden": 300}, "trainer": {"max_steps": 3000}}

    path = write_experiment(tmp_path, experiment_name("my study"), changes, ["a header"])
    assert path.name == "my_study_best.yaml"
    assert path.read_text().startswith("# @package _global_\n# a header\n")
    assert OmegaConf.to_container(OmegaConf.load(path)) == changes


def test_sigterm_stops_a_waiting_worker_at_once_and_a_busy_one_after_its_trial() -> None:
    """The handler of sweeper/worker.py, driven by a real SIGTERM to this process."""
    before = signal.getsignal(signal.SIGTERM)
    idle = StopRequest()
    with idle.installed(), pytest.raises(SystemExit) as exited, idle.waiting():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # cut short by the signal
    assert exited.value.code == 128 + signal.SIGTERM

    busy = StopRequest()
    with busy.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert busy.requested  # noted, the work at hand goes on
        with pytest.raises(SystemExit):
            busy.stop_if_requested()  # ...and the worker stops before its next trial
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_trial_put_back_by_a_takeover_and_asked_for_is_continued_not_restarted(
    tmp_path: Path,
) -> None:
    """Between another process's put-back and its pop, a plain ask may pop the trial first."""
    url = f"sqlite:///{tmp_path}/s.db"
    storage = open_sweep_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    space = build_search_space({"optim.lr": "interval(0.001, 0.1)"}, [])
    trial = study.ask(space.distributions)
    trial.set_user_attr(OWNER_ATTR, {"host": HOST, "pid": dead_pid(), "token": "k"})
    storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)  # put back
    leases = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    source = TrialSource(
        study,
        storage,
        leases,
        space,
        OmegaConf.create({}),
        2,
        lambda: claim_lock(url, storage, "s"),
    )
    asked = source.ask_new()
    assert asked.number == trial.number and asked.params == trial.params
    assert asked.continued_because is not None  # resumed from its checkpoint, in its own folder
    assert len(study.trials) == 1 and owned_by(leases, study.trials[0])


@pytest.mark.parametrize(
    ("direction", "objectives", "better", "worse"),
    [
        ("minimize", ("val_loss",), {"val_loss": 2.0}, {"val_loss": 2.2}),
        ("maximize", ("novel_fraction",), {"novel_fraction": 0.9}, {"novel_fraction": 0.5}),
    ],
)
def test_a_trial_draws_its_figure_only_when_it_improves_on_the_study(
    direction: str, objectives: tuple[str, ...], better: dict, worse: dict
) -> None:
    """EmbeddingFigure asks TrialReporter.improves_on_study: the study's objective and direction."""
    from makemore_sweep.sweeper.trial_hook import TrialReporter

    study = optuna.create_study(direction=direction)
    first = TrialReporter(study, study.ask(), objectives=objectives)
    assert first.improves_on_study(worse)  # nothing complete yet: the first always draws
    study.tell(first.trial, 2.1 if direction == "minimize" else 0.7)
    second = TrialReporter(study, study.ask(), objectives=objectives)
    assert second.improves_on_study(better)
    assert not second.improves_on_study(worse)
    pareto = optuna.create_study(directions=["minimize", "minimize"])
    pareto.tell(pareto.ask(), [2.1, 1000.0])
    assert TrialReporter(
        pareto, pareto.ask(), objectives=("val_loss", "n_params")
    ).improves_on_study(worse)
