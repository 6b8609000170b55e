"""Shared Optuna storage on a real PostgreSQL (scripts/postgres-local.sh).

Independent workers on one study cooperate toward its total number of trials, first with
Optuna's ask/tell directly, then as two `makemore-train sweep=...` processes (which needs the
Optuna sweeper of sweeps/). Without PostgreSQL these tests skip on a laptop and fail under CI.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from conftest import REPO_ROOT, local_service, skip_or_fail

from makemore_sweep.sweeper.storage import open_storage

# One pytest-xdist worker runs every test of the session's PostgreSQL (test_claims_race too),
# so that no other worker's session stops the server under it.
pytestmark = [pytest.mark.service, pytest.mark.timeout(900), pytest.mark.xdist_group("postgres")]

SCRIPT = REPO_ROOT / "scripts" / "postgres-local.sh"
SWEEP = "beat_2p2"


def _postgres_installed() -> bool:
    return shutil.which("pg_ctl") is not None or bool(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The local PostgreSQL's storage URL; started for the session (and stopped) if not running."""
    if not _postgres_installed():
        skip_or_fail("PostgreSQL is not installed (sudo scripts/install-services.sh postgres)")
    with local_service(SCRIPT) as url:
        yield url


def _study_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)


def _assert_cooperated(trials: list[optuna.trial.FrozenTrial], n_trials: int) -> None:
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states, states
    assert optuna.trial.TrialState.FAIL not in states, states
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Each worker checks the study's count before asking for more, so together they overshoot
    # by at most one batch of the other worker.
    assert n_trials <= len(complete) <= n_trials + 2, len(complete)
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)


# One worker of Optuna's distributed pattern: open the shared study and ask/tell until the
# study as a whole has N finished trials. Started twice, the two must cooperate.
WORKER = """
import sys, time
from pathlib import Path
import optuna
from makemore_sweep.sweeper.storage import open_storage

url, name, n_trials, me, ready_dir = sys.argv[1:6]
n_trials, ready_dir = int(n_trials), Path(ready_dir)
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name=name, storage=open_storage(url), load_if_exists=True)
# Start together: wait (at most a minute) until both workers are ready.
(ready_dir / me).touch()
deadline = time.time() + 60
while len(list(ready_dir.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.05)
finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
while len(study.get_trials(deepcopy=False, states=finished)) < n_trials:
    trial = study.ask()
    x = trial.suggest_float("x", -5.0, 5.0)
    time.sleep(0.3)  # stands for training; long enough for the two workers to interleave
    trial.set_user_attr("worker", me)
    study.tell(trial, (x - 2.0) ** 2)
"""


def test_two_workers_share_one_study_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    name, n_trials = f"workers-{uuid.uuid4().hex[:8]}", 6
    ready = tmp_path / "ready"
    ready.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, postgres_url, name, str(n_trials), me, str(ready)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for me in ("a", "b")
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    trials = _study_trials(postgres_url, name)
    _assert_cooperated(trials, n_trials)
    assert {t.user_attrs["worker"] for t in trials} == {"a", "b"}


def _require_sweep(name: str) -> None:
    if not (REPO_ROOT / "sweeps" / f"{name}.yaml").is_file():
        skip_or_fail(
            f"sweeps/{name}.yaml is missing: the Optuna sweeper (issue 3) is needed for this test"
        )


def test_two_sweep_processes_cooperate_on_one_postgres_study(
    postgres_url: str, names_path: Path, run_env: dict[str, str], tmp_path: Path
) -> None:
    _require_sweep(SWEEP)
    name, n_trials = f"sweeps-{uuid.uuid4().hex[:8]}", 6
    password = urlsplit(postgres_url).password
    assert password
    common = [
        "-m",
        f"sweep={SWEEP}",
        # The URL as a user might type it, password and all: it must still never be shown.
        f"hydra.sweeper.storage={postgres_url}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.export_dir={tmp_path / 'experiments'}",  # not the checkout's conf/
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.n_jobs=2",
        # Every trial runs to the end, so the count below is of trained models; the default
        # Hyperband pruner would stop some of them after 50 steps.
        "hydra.sweeper.pruner=none",
        f"data.path={names_path}",
        "trainer.max_steps=100",
        "trainer.val_every_n_steps=50",
        "threads=1",
    ]
    sweeps = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "makemore_sweep.cli.train",
                *common,
                f"hydra.sweep.dir={tmp_path / me}",
            ],
            cwd=tmp_path,
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in ("a", "b")
    ]
    outputs = [s.communicate(timeout=800) for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], [err[-3000:] for _, err in outputs]

    _assert_cooperated(_study_trials(postgres_url, name), n_trials)
    for stdout, stderr in outputs:
        assert password not in stdout and password not in stderr
    for wandb_file in tmp_path.glob("*/*/wandb/**/*"):
        if wandb_file.is_file():
            assert password.encode() not in wandb_file.read_bytes(), wandb_file


def test_the_storage_url_is_the_last_line_and_start_is_idempotent(postgres_url: str) -> None:
    again = subprocess.run(
        [SCRIPT, "start"], check=False, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0
    assert again.stdout.strip().splitlines()[-1] == postgres_url
    parts = urlsplit(postgres_url)
    assert (parts.scheme, parts.hostname, parts.path) == (
        "postgresql+psycopg2",
        "127.0.0.1",
        "/optuna",
    )
    assert parts.password  # never an open database, even on 127.0.0.1
