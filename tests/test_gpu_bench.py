"""bench/gpu.sh refuses, in one sentence, to run where there is no CUDA GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu.sh"


def _run(python: str) -> subprocess.CompletedProcess:
    # no GPU visible, whatever this machine has (so the test means the same everywhere)
    env = dict(os.environ, PYTHON=python, CUDA_VISIBLE_DEVICES="")
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_gpu_bench_refuses_without_cuda():
    done = _run(sys.executable)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bench/gpu.sh: no CUDA GPU to measure here (")
    assert lines[0].endswith("run it on a machine with an NVIDIA GPU")


def test_gpu_bench_names_a_missing_package(tmp_path):
    """An interpreter without torch is named, in one sentence, before anything runs."""
    bare = tmp_path / "python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")  # no site-packages
    bare.chmod(0o755)
    done = _run(str(bare))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"bench/gpu.sh: {bare} cannot import torch; install torch (CUDA build), "
        "transformers and peft first"]
