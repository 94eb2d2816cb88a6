"""Device names (``train.device``, ``--device``) checked against this torch before use."""

from __future__ import annotations

import re
from typing import Any

from maspo.errors import UserError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str, what: str) -> None:
    """UserError unless ``name`` is auto, cpu, cuda or cuda:N (no torch needed)."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise UserError(f"{what} must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_device(name: str, what: str) -> Any:
    """The ``torch.device`` for ``name`` ("auto": cuda if available, else cpu), or a UserError
    naming ``what`` when this machine / torch build cannot provide it."""
    import torch  # here, so that checking a name needs no torch

    check_device_name(name, what)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
            raise UserError(f"{what}={name} asks for CUDA, but this machine has {build} "
                            f"(torch {torch.__version__}); use cpu or auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(f"{what}={name} names GPU {index}, but only "
                            f"{torch.cuda.device_count()} are visible; use cuda:0 to "
                            f"cuda:{torch.cuda.device_count() - 1}")
    return torch.device(name)
