"""report.html and optuna-dashboard rendered in a real headless Chromium (Debian `chromium`).

Each test takes a screenshot and reads the rendered DOM, then checks that the study name, the
number of trials and the best dev loss are on the page a person would see.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO_ROOT, skip_or_fail
from run_files import PNG_MAGIC, visible_text
from tiny_sweep import HIDDEN_SIZES, STUDY_NAME, TinySweep, build_tiny_sweep

from makemore_sweep.sweeper.study import build_search_space

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
    chromium: str, url: str, profile: Path, *extra: str, window: str = WINDOW
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
        f"--window-size={window}",
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


# The report's layout, measured in the page: a copy of report.html with this script added (the
# report itself has no scripts) writes the boxes of the top-trials card, its table and the page.
MEASURE_LAYOUT = """<script>
window.addEventListener("load", () => {
  const card = document.getElementById("top-trials"), table = card.querySelector("table");
  const box = (element) => { const r = element.getBoundingClientRect(); return [r.left, r.right]; };
  const layout = {card: box(card), card_client: card.clientWidth, card_scroll: card.scrollWidth,
    table: box(table), holder_client: table.parentElement.clientWidth,
    page_client: document.documentElement.clientWidth, page_scroll: document.documentElement.scrollWidth};
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify(layout);
  document.body.appendChild(out);
});
</script>"""
WIDE_SWEEP = (
    "push_2p0"  # the shipped sweep with the most parameters (9): the widest top-trials table
)
WIDE_TRIALS = 12


def wide_study(tiny_sweep: TinySweep, tmp_path: Path) -> tuple[str, list[str]]:
    """A study over the real search space of sweeps/push_2p0.yaml, sampled by Optuna, whose trials
    point at the tiny sweep's run folders; returns its storage URL and parameter names."""
    params = yaml.safe_load((REPO_ROOT / "sweeps" / f"{WIDE_SWEEP}.yaml").read_text())["hydra"][
        "sweeper"
    ]["params"]
    space = build_search_space(params, [])
    storage = f"sqlite:///{tmp_path / 'wide.db'}"
    study = optuna.create_study(
        study_name=WIDE_SWEEP, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for number in range(WIDE_TRIALS):
        run_dir = tiny_sweep.run_dirs[number % len(tiny_sweep.run_dirs)]
        trial = study.ask(fixed_distributions=space.distributions)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        study.tell(
            trial, json.loads((run_dir / "metrics.json").read_text())["val_loss"] + number / 1000
        )
    return storage, list(space.distributions)


def test_the_top_trials_table_of_a_wide_sweep_fits_its_card_at_1300_px(
    chromium: str, tiny_sweep: TinySweep, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    storage, param_names = wide_study(tiny_sweep, tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "makemore_sweep.cli.report",
            "--storage",
            storage,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    page = out / "report.html"
    measured = out / "measured.html"
    measured.write_text(page.read_text().replace("</body>", f"{MEASURE_LAYOUT}</body>"))
    dom = run_chromium(
        chromium, measured.as_uri(), tmp_path / "profile-layout", "--dump-dom", window="1300,1000"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    [found] = re.findall(r'<pre id="layout">(.*?)</pre>', dom.stdout)
    layout = json.loads(found)

    # Every parameter is a column, and the table stays inside its card: neither the card nor the
    # page scrolls sideways, and the table needs no scrolling of its own at this width.
    assert layout["page_scroll"] <= layout["page_client"] == 1300, layout
    assert layout["card_scroll"] <= layout["card_client"], layout
    assert layout["card"][0] <= layout["table"][0] and layout["table"][1] <= layout["card"][1], (
        layout
    )
    assert layout["table"][1] - layout["table"][0] <= layout["holder_client"] + 0.5, layout
    assert len(param_names) == 9 and all(
        f'<th class="text" title="{name}">' in dom.stdout for name in param_names
    )

    # What a person sees: the screenshot (looked at when this test was written).
    shot = run_chromium(
        chromium,
        page.as_uri(),
        tmp_path / "profile-layout",
        f"--screenshot={tmp_path / 'wide.png'}",
        window="1300,1000",
    )
    assert shot.returncode == 0 and (tmp_path / "wide.png").read_bytes().startswith(PNG_MAGIC)


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
