"""wandb's offline run file read back: the ``history`` records of ``run-<id>.wandb``.

wandb 0.2x-0.3x reads these files only in its Go core (``wandb sync``), so the test reads
the format itself: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks
of LevelDB log records (4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first,
3 middle, 4 last), each payload a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7  # file header, and each record's header
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    """The protobuf records of a .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    pos, parts = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:  # zero padding
            continue
        parts = payload if kind in (FULL, FIRST) else parts + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def history(run_dir: Path) -> list[dict]:
    """Each ``run.log`` call of an offline run folder as {key: value}, in order."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def config(run_dir: Path) -> dict:
    """The run's config as its run and config records set it (last value of each key)."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    values = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            for item in updates:
                values["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return values
