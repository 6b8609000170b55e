"""report.html and optuna-dashboard rendered in a real headless Chromium (Debian `chromium`).

Each test takes a screenshot and reads the rendered DOM, then checks that the study name, the
number of trials and the best dev loss are on the page a person would see.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import skip_or_fail
from run_files import PNG_MAGIC, visible_text
from tiny_sweep import HIDDEN_SIZES, STUDY_NAME, TinySweep, build_tiny_sweep

pytestmark = [pytest.mark.service, pytest.mark.slow]

WINDOW = "1280,2000"
MIN_SCREENSHOT_BYTES = 20_000  # a blank or error page compresses to a few kB
SERVER_START_S = 60
RENDER_ATTEMPTS = 5


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    skip_or_fail("headless Chromium is not installed (apt-get install chromium)")
    raise AssertionError  # unreachable: skip_or_fail raises


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, names_path: Path) -> TinySweep:
    return build_tiny_sweep(tmp_path_factory.getbasetemp(), names_path)


def run_chromium(
    chromium: str, url: str, profile: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """One headless Chromium call; virtual time lets a JS app fetch and render before the dump."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW}",
        "--virtual-time-budget=15000",
        *extra,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def render(chromium: str, url: str, tmp_path: Path, name: str) -> tuple[str, Path]:
    """(visible text of the rendered DOM, screenshot path) of `url`."""
    profile = tmp_path / f"profile-{name}"
    dom = run_chromium(chromium, url, profile, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    screenshot = tmp_path / f"{name}.png"
    shot = run_chromium(chromium, url, profile, f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes().startswith(PNG_MAGIC)
    assert screenshot.stat().st_size > MIN_SCREENSHOT_BYTES
    return visible_text(dom.stdout), screenshot


def test_report_renders_study_name_trial_count_and_best_value(
    chromium: str, tiny_sweep: TinySweep, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "makemore_sweep.cli.report",
            "--storage",
            tiny_sweep.storage_url,
            "--study",
            STUDY_NAME,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text, _ = render(chromium, (out / "report.html").as_uri(), tmp_path, "report")
    assert STUDY_NAME in text
    assert f"{len(HIDDEN_SIZES)} trials" in text
    assert f"{tiny_sweep.best_value:.4f}" in text
    assert "Not drawn" not in text  # every figure is there


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on `port`, from the kernel's table (/proc/net/tcp)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(host_hex)[::-1]))
    return addresses


def wait_until_serving(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(
                f"the dashboard exited with {server.returncode}: {server.stdout.read() if server.stdout else ''}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the dashboard did not answer at {url} within {SERVER_START_S} s")


def test_dashboard_serves_the_study_on_localhost_only(
    chromium: str, tiny_sweep: TinySweep, tmp_path: Path
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "makemore_sweep.cli.dashboard",
            "--storage",
            tiny_sweep.storage_url,
            "--study",
            STUDY_NAME,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/api/studies", server)
        assert listening_addresses(port) == {"127.0.0.1"}
        study_url = f"{base}/dashboard/studies/1"

        # The app renders after fetching the study: read the page until the data has arrived.
        best, count = repr(tiny_sweep.best_value), f"{len(HIDDEN_SIZES)} Trials"
        for attempt in range(RENDER_ATTEMPTS):
            study_text, _ = render(chromium, study_url, tmp_path, f"dashboard-study-{attempt}")
            trials_text, _ = render(
                chromium, f"{study_url}/trials", tmp_path, f"dashboard-trials-{attempt}"
            )
            if best in study_text and count in trials_text:
                break
        assert STUDY_NAME in study_text
        assert "Best Trial" in study_text and best in study_text
        assert count in trials_text
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"{base}/dashboard/studies/1" in output  # the address it printed is the one that worked
