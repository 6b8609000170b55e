"""Helpers of the sweep tests: tiny-budget sweep commands, the study they leave, W&B run files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

STUDY = "beat_2p2"
SEARCHED = {"model.n_embd", "model.n_hidden", "data.block_size", "optim.lr"}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def sweep_args(names_path: Path, workdir: Path, *extra: str, steps: int = 60) -> list[str]:
    """`makemore-train sweep=beat_2p2` with a budget of seconds per trial, writing only under `workdir`."""
    return [
        "sweep=beat_2p2",
        f"data.path={names_path}",
        f"trainer.max_steps={steps}",
        "trainer.val_every_n_steps=20",
        "logger=none",
        f"hydra.sweeper.export_dir={workdir / 'conf' / 'experiment'}",
        *extra,
    ]


def load_study(workdir: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/studies/{name}.db")


def trials_in(study: optuna.Study, *states: TrialState) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=states)


def wandb_runs(run_dir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(group, config) of each offline W&B run under `run_dir`, read from its .wandb file.

    The file is a LevelDB-style log (32 KiB blocks, 7-byte record headers) of protobuf
    records after a 7-byte W&B header; wandb 0.31 ships no Python reader for it.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        group, config = "", {}
        for payload in _log_records(path.read_bytes()):
            record = pb.Record()
            record.ParseFromString(payload)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                group = record.run.run_group
                config.update({item.key: item.value_json for item in record.run.config.update})
            elif kind == "config":
                config.update({item.key: item.value_json for item in record.config.update})
        yield group, config


def _log_records(data: bytes, block: int = 32768, start: int = 7) -> Iterator[bytes]:
    pos, pending = start, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full record
            yield payload
        elif kind == 2:  # first fragment
            pending = payload
        elif kind == 3:  # middle
            pending += payload
        elif kind == 4:  # last
            yield pending + payload
