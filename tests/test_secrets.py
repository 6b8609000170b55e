"""Secrets never land in what a run writes: logs, saved configs, W&B files, metrics.json."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_checks import assert_clean_failure
from conftest import train_cli
from omegaconf import OmegaConf

from makemore_sweep.redaction import mask_text

API_KEY = "sentinelkey" + "0123456789abcdef" * 2 + "abcd"  # 40 characters, like a real W&B key
STORAGE_PASSWORD = "Sentinel-Storage-Pw"
TOKEN = "SentinelToken42"


def files_containing(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.slow
def test_api_key_and_passwords_are_not_written_anywhere(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            f"data.path={names_path}",
            "trainer.max_steps=50",
            "trainer.val_every_n_steps=50",
            f"hydra.run.dir={run_dir}",
            f"+notes.storage=postgresql://optuna:{STORAGE_PASSWORD}@db.example/optuna",  # free-form keys
            f"+notes.api_token={TOKEN}",
        ],
        cwd=tmp_path,
        env={**run_env, "WANDB_API_KEY": API_KEY},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for secret in (API_KEY, STORAGE_PASSWORD, TOKEN):
        assert secret not in output
        assert files_containing(run_dir, secret) == [], secret
    # Masked, not dropped: the saved config still shows where the storage is.
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "postgresql://optuna:***@db.example/optuna" in saved
    assert "api_token: '***'" in saved
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").notes.api_token == "***"
    assert (run_dir / "metrics.json").is_file() and list((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_resume_never_replays_a_masked_secret(
    names_path: Path, tmp_path: Path, run_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    token = f"+notes.api_token={TOKEN}"
    # The step schedule, so the finished run can be continued for more steps (onecycle ends at a rate of 0).
    args = [
        f"data.path={names_path}",
        "optim=sgd",
        "trainer.max_steps=50",
        "trainer.val_every_n_steps=50",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        token,
    ]
    assert train_cli(args, cwd=tmp_path, env=run_env).returncode == 0

    longer = "trainer.max_steps=100"  # a finished run is only continued for more steps
    replayed = train_cli([f"resume={run_dir}", longer], cwd=tmp_path, env=run_env)
    assert "+notes.api_token=***" in assert_clean_failure(replayed, "+notes.api_token")

    given_again = train_cli([f"resume={run_dir}", longer, token], cwd=tmp_path, env=run_env)
    assert given_again.returncode == 0, given_again.stdout + given_again.stderr
    assert files_containing(run_dir, TOKEN) == []
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "api_token: '***'" in saved


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("storage: postgresql://u:pw@host/db", "storage: postgresql://u:***@host/db"),
        ("  password: hunter2", "  password: '***'"),
        ("  password: 'hunter2'", "  password: '***'"),
        ("{api_token: abc, lr: 1}", "{api_token: '***', lr: 1}"),
        ("- +db.password=hunter2", "- +db.password=***"),
        (
            "override_dirname: a=1,+x.api_token=abc,b=2",
            "override_dirname: a=1,+x.api_token=***,b=2",
        ),
        ("password: ${oc.env:PGPASSWORD}", "password: ${oc.env:PGPASSWORD}"),
        ("lr: 0.01", "lr: 0.01"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    yaml.safe_load(masked)  # still YAML: a bare `***` would be read as an alias and refused
