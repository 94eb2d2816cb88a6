"""Model folders checked file by file before anything loads (no torch, no transformers).

A usable Hugging Face model folder has a ``config.json`` that parses, complete weights
(``model.safetensors``, every shard of ``model.safetensors.index.json``, or a PyTorch
``.bin`` archive) and tokenizer files. A safetensors file is complete when its size is
exactly what its header promises, so a truncated download or copy is caught here, with
a sentence, instead of deep inside ``from_pretrained``. A folder maspo wrote (a run's
``final_model/``) also carries a checksum manifest, verified here: altered bytes are named.
A model id (``org/name[@revision]``) names the snapshot folder ``maspo.hub`` fetches.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from maspo.errors import UserError
from maspo.hub import MODEL, HubId, fetch, offline, parse_hub_id, repo_files, snapshot
from maspo.manifest import manifest_problem, write_manifest

DEFAULT_MODEL_ALIASES = frozenset({"default", "smollm2-135m", "smollm2-135m-instruct"})
"""Model specs (besides None) that mean the embedded SmolLM2-135M-Instruct."""

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")
MODEL_MANIFEST = "maspo-manifest.json"  # in folders maspo saved; HF loaders ignore it
HEADER_SIZE_BYTES = 8  # a safetensors file starts with its JSON header's length, u64 LE


def is_default_model(spec: str | None) -> bool:
    return spec is None or spec.strip().lower() in DEFAULT_MODEL_ALIASES


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file at ``path`` is not complete, or None if it is."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(HEADER_SIZE_BYTES)
        if len(head) < HEADER_SIZE_BYTES:
            return f"is truncated ({size} bytes)"
        (header_len,) = struct.unpack("<Q", head)
        if HEADER_SIZE_BYTES + header_len > size:
            return f"is truncated ({size} bytes, shorter than its header)"
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "has an unreadable header"
    if not isinstance(header, dict):
        return "has an unreadable header"
    ends = [entry.get("data_offsets", [0, 0])[1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict)]
    expected = HEADER_SIZE_BYTES + header_len + max(ends, default=0)
    if size < expected:
        return f"is truncated ({size} of {expected} bytes)"
    if size > expected:
        return f"has {size - expected} bytes more than its header describes"
    return None


def _weight_files(path: Path) -> list[Path]:
    """The weight files the folder's index (or single file) names; [] when there is none."""
    for index in (SAFETENSORS_INDEX, BIN_INDEX):
        if (path / index).is_file():
            try:
                weight_map = json.loads((path / index).read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                raise UserError(f"model directory '{path}' has an unreadable {index}; "
                                "download or copy the model again") from None
            return [path / name for name in sorted(set(weight_map.values()))]
    return [path / name for name in SINGLE_WEIGHTS if (path / name).exists()][:1]


def check_model_dir(path: Path) -> None:
    """UserError naming the first missing or damaged file of the model folder ``path``."""
    if not path.is_dir():
        raise UserError(f"model directory '{path}' does not exist.")
    config = path / "config.json"
    if not config.is_file():
        raise UserError(f"model directory '{path}' has no config.json.")
    try:
        json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"model directory '{path}' has a config.json that is not valid JSON; "
                        "download or copy the model again.") from None
    weights = _weight_files(path)
    if not weights:
        raise UserError(f"model directory '{path}' has a config.json but no weights "
                        "(model.safetensors or pytorch_model.bin); download or copy them too.")
    for file in weights:
        if not file.is_file():
            raise UserError(f"model directory '{path}' lacks the weight file '{file.name}' "
                            "its index names; download or copy it too.")
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
        else:
            problem = None if zipfile.is_zipfile(file) else "is truncated or not a PyTorch file"
        if problem:
            raise UserError(f"model weights '{file}' {problem}; download or copy the model "
                            "again.")
    _check_manifest(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"model directory '{path}' has no tokenizer files (tokenizer.json or "
                        "similar); copy them from the original model.")


_verified: set[tuple] = set()  # folders whose files matched their manifest, by (name, size,
# mtime) of every file: one process checks each folder once, however often it is named


def _check_manifest(path: Path) -> None:
    if not (path / MODEL_MANIFEST).is_file():
        return  # a model from elsewhere: only the completeness checks above apply
    key = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(path.iterdir()) if p.is_file())
    if key in _verified:
        return
    problem = manifest_problem(path, MODEL_MANIFEST)
    if problem:
        raise UserError(f"model directory '{path}' is damaged: {problem}; train it again or "
                        "evaluate its run's checkpoint instead.")
    _verified.add(key)


def seal_model_dir(path: Path) -> dict[str, dict[str, Any]]:
    """Write the checksum manifest of a model folder maspo just saved; return its entries
    (file name -> bytes and sha256)."""
    return write_manifest(path, MODEL_MANIFEST)


def check_model_spec(spec: str | None) -> Path | None:
    """The checks of ``maspo.models.resolve_model`` that need no torch: the model folder
    ``spec`` names, checked (None for the embedded default, prepared on first use).

    A local folder wins; else ``org/name`` or ``org/name@revision`` is fetched from the
    Hugging Face Hub into its cache, or found there offline (``maspo.hub``).
    """
    if is_default_model(spec):
        return None  # the embedded model is prepared (and checked) on first use
    path = Path(spec).expanduser()
    if path.is_dir():
        check_model_dir(path)
        return path
    if path.exists():
        raise UserError(f"model path '{spec}' is a file, not a model directory.")
    hub = parse_hub_id(spec, MODEL)
    if hub is None:
        raise UserError(f"model directory '{spec}' does not exist.")
    folder = hub_model_folder(hub)
    check_model_dir(folder)
    return folder


HUB_MODEL_FILES = re.compile(  # what loading needs, at the top of a model repository
    r"[^/]+\.(json|txt|model|jinja|tiktoken)|(model|pytorch_model)[^/]*\.(safetensors|bin)")


def hub_model_folder(hub: HubId) -> Path:
    """The snapshot folder of hub model ``hub``: its config, tokenizer and weights
    (safetensors when the repository has them, else PyTorch ``.bin``), downloaded or
    found in the cache; other files (ONNX, GGUF, sub-folders) are left on the Hub."""
    folder = snapshot(hub, ["config.json"])  # resolves the revision
    if offline():
        return folder
    names = [n for n in repo_files(hub, folder) if HUB_MODEL_FILES.fullmatch(n)]
    if any(n.endswith(".safetensors") for n in names):
        names = [n for n in names if not n.endswith(".bin")]
    fetch(hub, folder, names)
    return folder
