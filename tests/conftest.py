"""Shared fixtures: the real names.txt (see checkout_names_file), and a way to run makemore-train."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from makemore_sweep.data.names_file import NAMES_ENV, checkout_names_file

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CI = bool(os.environ.get("CI"))
# The cores this session was given, before a pytest-xdist worker takes its share of them.
ALL_CORES: set[int] = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs `-n auto`), each worker keeps its own share of the
    cores, and every run a test starts inherits it: the product splits the cores it may use
    (cluster/local_launcher.py available_cores), so two tests side by side never oversubscribe
    the machine with each other's torch threads, as they would if both saw every core."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(ALL_CORES)
    if worker.startswith("gw") and 1 < workers <= len(cores):
        os.sched_setaffinity(0, cores[int(worker[2:]) % workers :: workers])
    # Started in the background (`make test &`, a script's `&`), the tests get SIGINT ignored, and
    # every run they start would keep it so: a test's Ctrl-C would do nothing. Python's own
    # handler here means a plain default in each run they start, as in a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files that hold slow or service tests run first, each file's tests kept together
    (its module fixtures are built once). pytest-xdist hands tests out in this order, so the
    quick tests come last and fill in while the other worker ends a long one; in name order the
    95-s wheel test was among the last, and one worker could run it alone."""
    long_files = {
        item.path
        for item in items
        if item.get_closest_marker("slow") or item.get_closest_marker("service")
    }
    items.sort(key=lambda item: item.path not in long_files)  # stable: file order kept within


def with_all_cores() -> None:
    """A service (PostgreSQL, slurmd) outlives the test that starts it: it gets every core."""
    if ALL_CORES:
        os.sched_setaffinity(0, ALL_CORES)


def skip_or_fail(reason: str) -> None:
    """Services missing on a laptop skip with a reason; under CI they are a failure."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


@contextmanager
def local_service(script: Path) -> Iterator[str]:
    """Run `script start` (scripts/postgres-local.sh, slurm-local.sh) for a test session.

    Yields the last line `start` prints (the storage URL, the SLURM_CONF export); stops the
    service afterwards unless it was already running before, so a developer's instance stays up.
    """
    already_running = (
        subprocess.run([script, "status"], check=False, capture_output=True).returncode == 0
    )
    started = subprocess.run(
        [script, "start"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=with_all_cores,
    )
    if started.returncode != 0:
        skip_or_fail(
            f"scripts/{script.name} start failed: {(started.stderr or started.stdout).strip()}"
        )
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        if not already_running:
            subprocess.run([script, "stop"], check=False, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def names_path() -> Path:
    """$MAKEMORE_NAMES, else data/names.txt, else ../shared/data/names.txt; skips without one (fails in CI)."""
    path = checkout_names_file(REPO_ROOT)
    if path is None:
        where = (
            os.environ.get(NAMES_ENV)
            or f"{REPO_ROOT / 'data' / 'names.txt'} or {REPO_ROOT.parent / 'shared' / 'data' / 'names.txt'}"
        )
        skip_or_fail(f"names.txt not found at {where}; put it there or set {NAMES_ENV}")
    assert path is not None
    return path


def user_shell_env() -> dict[str, str]:
    """This process's environment as a user's shell would have it: W&B offline, no key, no service."""
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    env.pop("WANDB_API_KEY", None)
    # A shell has no W&B service of another process: once a test has run W&B in this pytest
    # process (the notebook API's train()), its WANDB_SERVICE would be inherited.
    env.pop("WANDB_SERVICE", None)
    return env


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    return user_shell_env()


def train_cli(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `makemore-train` as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "makemore_sweep.cli.train", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def train_cli_running(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
    python_flags: Sequence[str] = (),
) -> Iterator[subprocess.Popen[str]]:
    """`makemore-train` started as a user starts it in a terminal, in a process group of its
    own: a test signals the group as a whole (Ctrl-C, a lost terminal). Whatever is left of
    the group when the block ends is killed.

    Ctrl-C reaches it as in a terminal: see `pytest_configure` for tests started in the background."""
    process = subprocess.Popen(
        [sys.executable, *python_flags, "-m", "makemore_sweep.cli.train", *args],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
