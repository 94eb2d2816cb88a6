"""Golden runs: what `maspo train` writes for two fixed configs stays bit for bit the same.

Each case trains the tiny model a few steps in a fresh process (as a user runs it) and
compares, with the files recorded under ``golden/<case>/<machine>/``: every
``metrics.jsonl`` record without its ``time/*`` keys, every ``samples.jsonl`` record, and
the final weights (``final_model/model.safetensors``). The cases switch on what a refactor
of the loop could silently change: a KL and an entropy term, entropy-shaped advantages, a
file data set split into train and held-out rows, bf16 autocast, K > 1 mini-batches and
micro-batching, evaluation between steps.

Float results depend on the machine's kernels (MKL and oneDNN pick them by instruction set
and by CPU vendor), so each recording keeps its machine's fingerprint (torch,
transformers, CPU capability, vendor and bf16 units), and one behaviour is recorded once
per kind of machine it was checked on. Where a recording's fingerprint matches this
machine's, the comparison is exact. Elsewhere an fp32 case is compared to a tolerance
(three steps of fp32 stay within 1e-4 across CPUs), while a bf16 case, whose rounding
differs enough between kernels to change sampled tokens by step 2, is held to what no
kernel can change: the steps and metric names logged, the prompts and answers each step
drew, and weights that moved. To record on this machine (only on a commit whose behaviour
is the one to keep): ``MASPO_WRITE_GOLDEN=1 python -m pytest tests/trainer/test_golden.py``
writes ``golden/<case>/<this machine>/`` and leaves the other machines' recordings alone.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from maspo.precision import bf16_units, cpu_vendor
from maspo.testing import tiny_overrides

GOLDEN = Path(__file__).parent / "golden"
WRITE = os.environ.get("MASPO_WRITE_GOLDEN") == "1"
REL_TOL = 1e-4  # elsewhere than the recording machine: values and weights this close

FILE_ROWS = [{"question": f"What is {a} + {b}?", "answer": str(a + b)}
             for a in range(1, 6) for b in range(2, 6)]  # 20 rows, GSM8K-style fields

CASES = {
    # built-in task, MASPO, KL to the reference and an entropy bonus, eval at step 2
    "task-maspo-kl-entropy": {
        "train.steps": 3, "train.eval_every": 2, "train.save_every": 2,
        "train.samples_per_step": 4, "loss.name": "maspo", "loss.kl_coef": 0.05,
        "loss.entropy_coef": 0.01, "optim.updates_per_step": 2,
    },
    # a data file split into train / held-out rows, GRPO with entropy-shaped advantages,
    # bf16 autocast, warm-up and one checkpoint at the end
    "file-grpo-bf16": {
        "train.steps": 3, "data.path": "{data}", "data.test_size": 4,
        "data.answer_check": "lenient", "loss.name": "grpo",
        "loss.entropy_advantage": "true", "train.precision": "bf16",
        "optim.warmup_steps": 2, "train.save_every": 0, "optim.updates_per_step": 2,
    },
}


def fingerprint() -> dict[str, object]:
    """What decides the float kernels a run gets: the libraries, torch's instruction-set
    level, and the CPU's vendor and bf16 units (MKL and oneDNN dispatch on both: at the same
    AVX512 level an AMD and an Intel CPU differ in the last bits)."""
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "cpu_vendor": cpu_vendor(),
            "cpu_bf16": list(bf16_units("cpu").flags)}


def machine_tag(print_: dict) -> str:
    """The folder name of a recording made on a machine with fingerprint ``print_``."""
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(print_["cpu_vendor"],
                                                                 print_["cpu_vendor"] or "cpu")
    units = print_["cpu_bf16"]
    bf16 = "amx" if "amx_bf16" in units else "avx512bf16" if units else "nobf16"
    return f"{vendor}-{print_['cpu_capability'].lower()}-{bf16}"


def recordings(case: str) -> list[Path]:
    """The machines ``case`` was recorded on, each a folder with its fingerprint."""
    return sorted(path.parent for path in (GOLDEN / case).glob("*/fingerprint.json"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train(model_dir: Path, out: Path, case: str) -> None:
    data = out.parent / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in FILE_ROWS))
    settings = {k: str(v).format(data=data) for k, v in CASES[case].items()}
    command = [sys.executable, "-m", "maspo", "train", "--no-progress",
               *tiny_overrides(model_dir, out, **settings)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _close(a, b) -> bool:
    """Equal structure; numbers equal within REL_TOL (relative to the larger magnitude)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)
    return a == b


def test_the_recordings_cover_both_cases_and_name_their_machines():
    for case in CASES:
        found = recordings(case)
        assert found, case
        for folder in found:
            print_ = json.loads((folder / "fingerprint.json").read_text())
            assert folder.name == machine_tag(print_), folder
    assert machine_tag({"cpu_vendor": "AuthenticAMD", "cpu_capability": "AVX512",
                        "cpu_bf16": ["avx512_bf16"]}) == "amd-avx512-avx512bf16"


@pytest.mark.parametrize("case", list(CASES))
def test_a_fixed_run_writes_what_it_wrote_before(tiny_model_dir, tmp_path, case):
    out = tmp_path / "run"
    _train(tiny_model_dir, out, case)
    metrics = [{k: v for k, v in record.items() if not k.startswith("time/")}
               for record in _jsonl(out / "metrics.jsonl")]
    samples = _jsonl(out / "samples.jsonl")
    weights = load_file(out / "final_model" / "model.safetensors")
    here = fingerprint()
    if WRITE:
        folder = GOLDEN / case / machine_tag(here)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (folder / "samples.json").write_text(json.dumps(samples, indent=1) + "\n")
        save_file(weights, folder / "weights.safetensors")
        (folder / "fingerprint.json").write_text(json.dumps(here, indent=1) + "\n")
    found = recordings(case)
    matching = [f for f in found if json.loads((f / "fingerprint.json").read_text()) == here]
    folder = (matching or found)[0]
    expected_metrics = json.loads((folder / "metrics.json").read_text())
    expected_samples = json.loads((folder / "samples.json").read_text())
    expected_weights = load_file(folder / "weights.safetensors")
    assert [r["step"] for r in metrics] == [r["step"] for r in expected_metrics]
    assert [r.keys() for r in metrics] == [r.keys() for r in expected_metrics]
    assert weights.keys() == expected_weights.keys()
    drawn = [(r["step"], r["prompt"], r["answer"]) for r in samples]
    assert drawn == [(r["step"], r["prompt"], r["answer"]) for r in expected_samples]
    hint = (f"(recorded on {folder.name}, this machine is {machine_tag(here)}; if this "
            "commit's behaviour is the one to keep, record anew with MASPO_WRITE_GOLDEN=1)")
    if matching:
        for got, want in zip(metrics, expected_metrics, strict=True):
            assert got == want, f"step {got['step']}"
        assert samples == expected_samples
        for key, value in weights.items():
            assert torch.equal(value, expected_weights[key]), key
    elif CASES[case].get("train.precision") != "bf16":
        for got, want in zip(metrics, expected_metrics, strict=True):
            assert _close(got, want), f"step {got['step']} {hint}"
        assert _close(samples, expected_samples), hint
        for key, value in weights.items():
            assert torch.allclose(value, expected_weights[key], rtol=REL_TOL,
                                  atol=REL_TOL), f"{key} {hint}"
    else:  # bf16 on other kernels: what rounding cannot change (checked above) and sane values
        for record in metrics:
            assert all(math.isfinite(v) for v in record.values()
                       if isinstance(v, float)), f"step {record['step']} {hint}"
    # the run really trained: the weights moved away from the initial model
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(weights[k], initial[k]) for k in weights if k in initial)
