"""Reading the records of an offline W&B run file (`run-ID.wandb`), for tests.

wandb writes its run as protobuf `Record`s in the LevelDB log format: a 7-byte file header
(":W&B", a 2-byte magic, a version byte), then 32 KiB blocks of chunks, each with a 7-byte
header (CRC32, little-endian length, type: FULL, FIRST, MIDDLE or LAST). wandb ships no Python
reader any more (its core is in Go), so this is the minimal one the tests need to check
what a run really recorded, e.g. that it finished with an exit record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

FILE_MAGIC = b":W&B"
FILE_HEADER_LEN = 7
BLOCK_LEN = 32768
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    pos, pending = FILE_HEADER_LEN, b""
    while pos + CHUNK_HEADER.size <= len(data):
        space = BLOCK_LEN - pos % BLOCK_LEN
        if space < CHUNK_HEADER.size:  # a block's tail too short for a header is padding
            pos += space
            continue
        _crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:  # zero padding up to the end of the block
            pos += space
            continue
        chunk = data[pos + CHUNK_HEADER.size : pos + CHUNK_HEADER.size + length]
        pos += CHUNK_HEADER.size + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def read_records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data.startswith(FILE_MAGIC), f"{path} is not a W&B run file"
    return [pb.Record.FromString(payload) for payload in _payloads(data)]


def exit_codes(path: Path) -> list[int]:
    """Exit codes of the exit records in a run file: [] if the run never finished."""
    return [r.exit.exit_code for r in read_records(path) if r.WhichOneof("record_type") == "exit"]


def run_files(run_dir: Path) -> list[Path]:
    """The offline run files under RUN_DIR/wandb, oldest first."""
    return sorted(
        (Path(run_dir) / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name
    )
