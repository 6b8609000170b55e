"""What every user-facing failure of a command must look like, checked on its real output."""

from __future__ import annotations

import subprocess

OFFLINE_PROXY = "http://127.0.0.1:1"  # nothing listens there: every download is refused at once


def offline(env: dict[str, str]) -> dict[str, str]:
    """The environment of a machine without internet access, as far as urllib can tell."""
    env = dict(env)
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    env.update(
        https_proxy=OFFLINE_PROXY,
        HTTPS_PROXY=OFFLINE_PROXY,
        http_proxy=OFFLINE_PROXY,
        HTTP_PROXY=OFFLINE_PROXY,
    )
    return env


def assert_clean_failure(result: subprocess.CompletedProcess[str], culprit: str) -> str:
    """Non-zero exit, no traceback, and an `error:` line naming the culprit; returns that line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert culprit in errors[0], errors[0]
    return errors[0]
