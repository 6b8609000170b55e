"""Reading what W&B wrote offline: the records of a run-*.wandb file (no network, no wandb sync).

The file is W&B's header (":W&B", 2-byte magic, version) followed by a LevelDB-style log:
32 KiB blocks of records (4-byte checksum, 2-byte length, 1-byte type: full, first, middle,
last), each payload one protobuf `Record`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

HEADER_SIZE = 7
BLOCK_SIZE = 32 * 1024
RECORD_HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, parts = HEADER_SIZE, []
    while position + RECORD_HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < RECORD_HEADER_SIZE:  # block trailer: zero padding
            position += left_in_block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        payload = data[position + RECORD_HEADER_SIZE : position + RECORD_HEADER_SIZE + length]
        position += RECORD_HEADER_SIZE + length
        if kind in (FULL, FIRST):
            parts = [payload]
        elif kind in (MIDDLE, LAST):
            parts.append(payload)
        else:
            continue
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            yield record


def run_config(path: Path) -> dict[str, Any]:
    """The run's config as W&B holds it: every config update of the run, merged."""
    config: dict[str, Any] = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        updates = (
            record.config.update
            if kind == "config"
            else record.run.config.update
            if kind == "run"
            else []
        )
        for item in updates:
            config[item.key] = json.loads(item.value_json)
    return config
