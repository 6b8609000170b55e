"""Checkpoints load as weights only: a file that pickles code is refused with one sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_checks import assert_clean_failure

from makemore_sweep.errors import UserError
from makemore_sweep.model.checkpoints import BEST_CHECKPOINT, network_from_checkpoint


class Trap:
    """Unpickling this creates a file: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def trapped_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder whose best checkpoint carries a pickled object that would run code."""
    run_dir = tmp_path / "run"
    (run_dir / BEST_CHECKPOINT).parent.mkdir(parents=True)
    payload_ran = tmp_path / "payload-ran"
    torch.save(
        {"hyper_parameters": {}, "state_dict": {}, "callbacks": Trap(payload_ran)},
        run_dir / BEST_CHECKPOINT,
    )
    return run_dir, payload_ran


def test_pickled_object_is_refused_in_one_sentence(trapped_run: tuple[Path, Path]) -> None:
    run_dir, payload_ran = trapped_run
    with pytest.raises(UserError) as caught:
        network_from_checkpoint(run_dir / BEST_CHECKPOINT)
    message = str(caught.value)
    assert "refused" in message and str(run_dir / BEST_CHECKPOINT) in message
    assert "\n" not in message
    assert not payload_ran.exists()


def test_makemore_sample_refuses_it_without_a_traceback(trapped_run: tuple[Path, Path]) -> None:
    run_dir, payload_ran = trapped_run
    result = subprocess.run(
        [sys.executable, "-m", "makemore_sweep.cli.sample", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "refused" in assert_clean_failure(result, str(run_dir))
    assert not payload_ran.exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not a checkpoint at all", "cannot be read"),
        (None, "not a makemore-train checkpoint"),
    ],
    ids=["garbage", "foreign-checkpoint"],
)
def test_damaged_or_foreign_checkpoints_are_one_sentence(
    content: bytes | None, words: str, tmp_path: Path
) -> None:
    path = tmp_path / "x.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=words):
        network_from_checkpoint(path)


def test_truncated_checkpoint_is_reported_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="damaged"):
        network_from_checkpoint(path)
