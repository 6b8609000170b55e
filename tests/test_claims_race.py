"""Eight processes race to continue one abandoned trial: exactly one wins, on every storage.

Each racer is a real process running the workers' own code (TrialSource.next under
the study's claim lock, Optuna's WAITING → RUNNING pop deciding). They start together at a
signal, on SQLite, a journal file and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_postgres import postgres_url  # noqa: F401 - the session's PostgreSQL, as a fixture

from makemore_sweep.sweeper.claims import CONTINUED_ATTR, HOST, OWNER_ATTR
from makemore_sweep.sweeper.storage import open_sweep_storage

RACERS = 8
PARAMS = {"optim.lr": 0.0123}

RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import optuna
    from omegaconf import OmegaConf
    from makemore_sweep.sweeper.claims import TrialLeases, TrialSource
    from makemore_sweep.sweeper.storage import claim_lock, open_sweep_storage
    from makemore_sweep.sweeper.study import build_search_space

    url, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    ready, end = Path(f"{go}.ready"), Path(f"{go}.end")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_sweep_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    leases = TrialLeases(study, storage, heartbeat_interval=1, grace_period=30)
    space = build_search_space({"optim.lr": "interval(0.001, 0.1)"}, [])
    lock = lambda: claim_lock(url, storage, name)
    source = TrialSource(study, storage, leases, space, OmegaConf.create({}), 1, lock)
    (ready / str(os.getpid())).touch()
    while not go.exists():
        time.sleep(0.001)
    taken = source.next()  # the study has its one trial: an abandoned one or nothing
    print(f"won {taken.number} {taken.params} {leases.owner['token']}" if taken else "lost", flush=True)
    # The winner stays alive until every racer has looked: a winner gone would leave its trial
    # abandoned again (its process is gone), and a late racer would rightly take it over.
    while not end.exists():
        time.sleep(0.01)
    """
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _race(url: str, tmp_path: Path) -> None:
    name = f"race-{time.monotonic_ns()}"
    study = optuna.create_study(study_name=name, storage=open_sweep_storage(url))
    study.enqueue_trial(PARAMS)
    trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(0.001, 0.1)})
    # Its worker was SIGKILLed: the owner is a process of this host that is gone.
    trial.set_user_attr(OWNER_ATTR, {"host": HOST, "pid": _dead_pid(), "token": "dead"})

    go = tmp_path / f"{name}.go"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, name, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(RACERS)
    ]
    ready = Path(f"{go}.ready")
    ready.mkdir()
    deadline = time.monotonic() + 120
    # Every racer has its storage open and waits for the signal (a loaded machine may take long).
    while len(list(ready.iterdir())) < RACERS and time.monotonic() < deadline:
        ended = [racer for racer in racers if racer.poll() is not None]
        assert not ended, f"a racer ended before the signal: {ended[0].communicate()[1]}"
        time.sleep(0.05)
    go.touch()
    lines = [racer.stdout.readline().strip() for racer in racers]  # type: ignore[union-attr]
    Path(f"{go}.end").touch()
    outcomes = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in outcomes]
    winners = [line for line in lines if line.startswith("won")]
    assert len(winners) == 1, lines
    assert lines.count("lost") == RACERS - 1

    after = optuna.load_study(study_name=name, storage=open_sweep_storage(url)).trials
    assert len(after) == 1  # no new trial: the same one, continued
    (continued,) = after
    assert continued.state == TrialState.RUNNING and continued.number == trial.number
    assert continued.params == PARAMS and f"won {trial.number} {PARAMS}" in winners[0]
    assert continued.user_attrs[OWNER_ATTR]["token"] == winners[0].rsplit(" ", 1)[1]
    assert continued.user_attrs[CONTINUED_ATTR] == 1


@pytest.mark.slow
def test_racing_takers_on_sqlite(tmp_path: Path) -> None:
    _race(f"sqlite:///{tmp_path}/race.db", tmp_path)


@pytest.mark.slow
def test_racing_takers_on_a_journal_file(tmp_path: Path) -> None:
    _race(f"journal:{tmp_path}/race.log", tmp_path)
    assert not list(tmp_path.glob("*.claim*"))  # the journal's claim lock left no file


@pytest.mark.service
@pytest.mark.xdist_group("postgres")
def test_racing_takers_on_postgresql(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    _race(postgres_url, tmp_path)
