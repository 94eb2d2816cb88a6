"""Checksum manifests: the size and sha256 of each file of a folder, checked before use.

Checkpoints (``manifest.json``) and a run's ``final_model/`` (``maspo-manifest.json``,
a name Hugging Face loaders ignore) carry one, so bytes altered after writing are
reported as damage instead of being trained on or evaluated. No torch needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HASH_BLOCK_BYTES = 1 << 24  # 16 MiB reads: hashing runs at disk speed with little memory


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, name: str, known: Mapping[str, str] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """Record the size and sha256 of every file in ``folder`` in ``folder/name`` (last) and
    return the entries; ``known``: file name -> sha256 of a file the caller just hashed
    (a hard link to one, say), taken as it is instead of read again."""
    known = known or {}
    files = {p.name: {"bytes": p.stat().st_size, "sha256": known.get(p.name) or sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != name}
    (folder / name).write_text(json.dumps({"files": files}, indent=1) + "\n")
    return files


def manifest_problem(folder: Path, name: str, files: tuple[str, ...] | None = None
                     ) -> str | None:
    """Why ``folder``'s files do not match its manifest ``name`` (a missing, resized or
    altered file; no or an unreadable manifest), or None. ``files``: only these."""
    try:
        listed = json.loads((folder / name).read_text())["files"]
    except FileNotFoundError:
        return f"it has no {name}, so its files cannot be verified"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {name} is unreadable"
    for file_name in files if files is not None else tuple(listed):
        entry = listed.get(file_name)
        file = folder / file_name
        if entry is None or not file.is_file():
            return f"{file_name} is missing"
        if file.stat().st_size != entry["bytes"]:
            return f"{file_name} has {file.stat().st_size} bytes, not {entry['bytes']}"
        if sha256(file) != entry["sha256"]:
            return f"{file_name} does not match its checksum (its bytes were altered)"
    return None
