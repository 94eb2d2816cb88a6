"""Atomic, pickle-free training checkpoints.

A checkpoint is a directory ``checkpoints/step-NNNNNN/`` holding
- ``weights.safetensors``: the trainable weights exactly as in memory (LoRA runs: the
  adapters only; the frozen base comes from the run's config),
- ``optimizer.safetensors``: AdamW moments and step counts, one tensor each,
- ``rng.safetensors``: the torch CPU RNG state,
- ``trainer_state.json``: step, data position, scheduler, optimizer hyperparameters,
  Python RNG state and anything else the trainer keeps.
- ``manifest.json``: the size and sha256 of each file above, written last.
The last step's checkpoint is written after the run's final model: when that model's
``model.safetensors`` holds exactly the trainable weights (same names, dtypes, shapes and
values; not for LoRA runs), ``weights.safetensors`` is a hard link to it, not a second
copy (``SharedWeights``): 0.5 GB less to write and keep for the 135M default model.
Deleting either name leaves the other intact.
It is written into ``step-NNNNNN.tmp`` and renamed into place; ``checkpoints/latest``
(rewritten by temp file + rename) names the newest complete one. A crash at any moment
leaves the previous checkpoint and pointer intact; a write that fails (a full disk) removes
its ``.tmp`` folder and is a UserError naming the checkpoint ``--resume`` will take. Every
file is checked against the manifest before anything is loaded, so altered bytes are
reported as damage, never trained on; resuming takes the newest intact checkpoint and says
so when that is not the latest. Loading uses safetensors and JSON only: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file

from maspo.errors import UserError
from maspo.manifest import manifest_problem, write_manifest
from maspo.paths import disk_reason, write_atomic, write_errors

LATEST = "latest"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "weights.safetensors"  # the trainable weights exactly as in memory
MANIFEST_FILE = "manifest.json"  # {"files": {name: {"bytes": n, "sha256": hex}}}


def step_dir_name(step: int) -> str:
    """The folder name of checkpoint ``step`` under ``checkpoints/``: ``step-NNNNNN``."""
    return f"step-{step:06d}"


def checkpoint_problem(path: Path, files: tuple[str, ...] | None = None) -> str | None:
    """Why checkpoint ``path`` cannot be trusted (a missing, resized or altered file, or no
    manifest), or None when ``files`` (default: all four) match the manifest."""
    return manifest_problem(path, MANIFEST_FILE,
                            files or (STATE_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, RNG_FILE))


def verify_checkpoint(path: Path, files: tuple[str, ...] | None = None) -> None:
    """UserError naming checkpoint ``path`` as damaged unless its files match the manifest."""
    problem = checkpoint_problem(path, files)
    if problem:
        raise UserError(f"checkpoint {str(path)!r} is damaged: {problem}")


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor],
                                                                   list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            # written as they are: a copy of 1 GB of moments (135M weights) costs seconds
            tensors[f"{index}.{slot}"] = torch.as_tensor(value).detach().contiguous()
    groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
    return tensors, groups


class SharedWeights(NamedTuple):
    """A safetensors file just written beside the checkpoint (the final model's weights)
    that the checkpoint may link instead of writing its own, and its sha256."""

    path: Path
    sha256: str


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler,
                    state: dict[str, Any], keep: int,
                    shared: SharedWeights | None = None) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically and prune to ``keep`` newest;
    its weights file is a hard link to ``shared`` where that holds exactly its weights.

    A failed write (a full disk, a read-only folder) removes the half-written
    ``step-N.tmp`` and is a UserError naming the intact checkpoint ``--resume`` takes.
    """
    final = root / step_dir_name(step)
    tmp = root / f"{final.name}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("step-*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        _write_files(tmp, step, model, optimizer, scheduler, state, shared)
        if final.exists():  # a re-run of the same step after a resume: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_atomic(root / LATEST, final.name + "\n")
    except write_errors() as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"could not write checkpoint {final.name} in {str(root)!r} "
                        f"({disk_reason(err)}); {_resume_hint(root)}") from None
    checkpoints = sorted(p for p in root.glob("step-*") if p.is_dir() and
                         not p.name.endswith(".tmp"))
    for old in checkpoints[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_files(folder: Path, step: int, model, optimizer, scheduler,
                 state: dict[str, Any], shared: SharedWeights | None) -> None:
    """The files of checkpoint ``step`` (see the module doc), the manifest last."""
    trainable = {name: p.detach().contiguous() for name, p in model.named_parameters()
                 if p.requires_grad}
    known: dict[str, str] = {}
    if shared is not None and _link_if_same(shared.path, trainable, folder / WEIGHTS_FILE):
        known[WEIGHTS_FILE] = shared.sha256
    else:
        save_file(trainable, folder / WEIGHTS_FILE)
    tensors, groups = _optimizer_tensors(optimizer)
    save_file(tensors, folder / OPTIMIZER_FILE)
    save_file({"torch": torch.get_rng_state()}, folder / RNG_FILE)
    py_version, py_state, py_gauss = random.getstate()
    full_state = {
        **state,
        "step": step,
        "scheduler": scheduler.state_dict(),
        "optimizer_groups": groups,
        "python_rng": [py_version, list(py_state), py_gauss],
    }
    (folder / STATE_FILE).write_text(json.dumps(full_state, indent=1))
    write_manifest(folder, MANIFEST_FILE, known)


def _link_if_same(source: Path, tensors: dict[str, torch.Tensor], target: Path) -> bool:
    """Hard-link the safetensors file ``source`` as ``target`` if it holds exactly
    ``tensors`` (the same names, dtypes, shapes and values); False where it does not or
    the file system cannot link (the caller then writes ``target`` itself)."""
    try:
        with safe_open(source, framework="pt") as saved:  # (memory-mapped: no copy)
            if set(saved.keys()) != set(tensors):
                return False
            for name, value in tensors.items():
                stored = saved.get_tensor(name)
                if (stored.dtype != value.dtype or stored.shape != value.shape
                        or not torch.equal(stored, value.to(stored.device))):
                    return False
        os.link(source, target)
    except (OSError, SafetensorError):
        return False
    return True


def latest_saved(root: Path) -> str | None:
    """The name of the newest checkpoint written under ``root`` (not verified: the
    ``latest`` pointer), or None before the first."""
    pointer = root / LATEST
    try:
        return pointer.read_text().strip() or None
    except OSError:
        return None


def _resume_hint(root: Path) -> str:
    """What a user does after a failed write: where ``--resume`` will continue from."""
    latest = latest_saved(root)
    if latest:
        return (f"checkpoint {latest} is intact: free some space (or make the folder "
                "writable), then continue with --resume")
    return ("there is no earlier checkpoint: free some space (or make the folder writable), "
            "then --resume starts the run over")


def _step_dirs(root: Path) -> list[Path]:
    """Complete-looking checkpoint folders under ``root``, newest first."""
    return sorted((p for p in root.glob("step-*") if p.is_dir() and
                   not p.name.endswith(".tmp")), reverse=True)


def latest_checkpoint(root: Path, note=None) -> Path | None:
    """The newest intact checkpoint under ``root`` (None if no checkpoint was written).

    When the one ``latest`` names is damaged, the newest intact earlier one is returned and
    ``note`` (default: stderr) is told which and why; when none is intact: a UserError.
    """
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    named = root / pointer.read_text().strip()
    candidates = [named] + [p for p in _step_dirs(root) if p.name < named.name]
    damage = []
    for path in candidates:
        problem = checkpoint_problem(path) if (path / STATE_FILE).is_file() else (
            "it is missing or incomplete")
        if problem is None:
            if damage:
                (note or _stderr)(f"checkpoint {damage[0]}; using {path.name}, the newest "
                                  "intact one")
            return path
        damage.append(f"{path.name} is damaged ({problem})")
    raise UserError(f"no intact checkpoint is left in {str(root)!r} (checkpoint "
                    f"{'; '.join(damage)}); start a new run in another train.output_dir")


def _stderr(message: str) -> None:
    print(f"maspo: note: {message}", file=sys.stderr)


def load_checkpoint(path: Path, model, optimizer, scheduler,
                    verify: bool = True) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG states in place; return trainer state.

    The files are verified against the manifest first (``verify_checkpoint``) unless the
    caller just did (``latest_checkpoint`` returns verified checkpoints)."""
    if verify:
        verify_checkpoint(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
        missing, unexpected = load_model(model, path / WEIGHTS_FILE, strict=False)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if trainable & set(missing) or unexpected:
            raise UserError(f"checkpoint {str(path)!r} does not match the model: missing "
                            f"{sorted(trainable & set(missing))[:3]}, unexpected "
                            f"{sorted(unexpected)[:3]}")
        tensors = load_file(path / OPTIMIZER_FILE)
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            index, slot = key.split(".", 1)
            slots.setdefault(int(index), {})[slot] = value
        optimizer.load_state_dict({"state": slots, "param_groups": state["optimizer_groups"]})
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(load_file(path / RNG_FILE)["torch"])
        version, py_state, gauss = state["python_rng"]
        random.setstate((version, tuple(py_state), gauss))
    except (OSError, KeyError, ValueError, TypeError, SafetensorError) as err:
        raise UserError(f"checkpoint {str(path)!r} is unreadable or corrupt "
                        f"({type(err).__name__}: {err})") from None
    return state
