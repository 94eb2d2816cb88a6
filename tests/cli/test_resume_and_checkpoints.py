"""Resume as the README says (the run's saved config, only resumable keys overridable),
checksummed checkpoints (a flipped byte is named), the newest intact one taken."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from safetensors.torch import load_file

from maspo.checkpoint import WEIGHTS_FILE, checkpoint_problem, latest_checkpoint
from maspo.cli import main
from maspo.errors import UserError
from maspo.testing import tiny_overrides


def _steps(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _flip_a_weight_byte(path) -> None:
    """Flip one byte inside the tensor data (past the JSON header) of a safetensors file."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    index = 8 + header + (len(data) - 8 - header) // 2
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def test_readme_resume_line_continues_an_override_started_run(tiny_model_dir, tmp_path,
                                                              capsys):
    out = tmp_path / "run"
    started = tiny_overrides(tiny_model_dir, out, **{"train.steps": 1, "rollout.group_size": 2})
    assert main(["train", *started[:3], "--no-progress", *started[3:]]) == 0  # option inside
    capsys.readouterr()
    # the README's line, plus the one key that may change
    assert main(["train", f"train.output_dir={out}", "--resume", "--no-progress",
                 "train.steps=2"]) == 0
    assert "resuming from step-000001" in capsys.readouterr().out
    assert _steps(out) == [0, 1, 2]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["steps"] == 2 and saved["rollout"]["group_size"] == 2
    # repeating the original overrides (same values) still resumes
    assert main(["train", "--resume", "--no-progress", *started]) == 0


def test_a_flipped_byte_is_named_and_resume_takes_the_newest_intact_checkpoint(run_copy,
                                                                             capsys):
    newest = run_copy / "checkpoints" / "step-000002"
    _flip_a_weight_byte(newest / WEIGHTS_FILE)
    assert "weights.safetensors does not match its checksum" in checkpoint_problem(newest)
    assert checkpoint_problem(run_copy / "checkpoints" / "step-000001") is None

    metrics = (run_copy / "metrics.jsonl").read_text()
    assert main(["eval", str(newest), "--n", "1", "--no-progress",
                 "--out", str(run_copy / "eval")]) == 2
    assert "is damaged" in capsys.readouterr().err and not (run_copy / "eval").exists()

    assert main(["train", "--resume", f"train.output_dir={run_copy}", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "step-000002 is damaged" in captured.err and "using step-000001" in captured.err
    assert "resuming from step-000001" in captured.out
    assert _steps(run_copy) == [0, 1, 2]
    assert (run_copy / "metrics.jsonl").read_text() != metrics  # step 2 was redone
    assert checkpoint_problem(newest) is None  # and rewritten intact
    assert load_file(newest / WEIGHTS_FILE)


def test_no_intact_checkpoint_is_an_error_that_keeps_everything(run_copy, capsys):
    for step in ("step-000001", "step-000002"):
        _flip_a_weight_byte(run_copy / "checkpoints" / step / WEIGHTS_FILE)
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    assert main(["train", "--resume", f"train.output_dir={run_copy}"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in err and "step-000001" in err and "step-000002" in err
    assert err.count("\n") == 1
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before
    with pytest.raises(UserError, match="damaged"):
        latest_checkpoint(run_copy / "checkpoints")


def test_a_checkpoint_without_its_manifest_is_not_trusted(run_copy):
    (run_copy / "checkpoints" / "step-000002" / "manifest.json").unlink()
    shutil.rmtree(run_copy / "checkpoints" / "step-000001")
    with pytest.raises(UserError, match="no manifest.json"):
        latest_checkpoint(run_copy / "checkpoints")


def test_a_flipped_byte_in_a_runs_final_model_is_named(run_copy, capsys):
    final = run_copy / "final_model"
    assert (final / "maspo-manifest.json").is_file()
    _flip_a_weight_byte(final / "model.safetensors")
    assert main(["eval", str(run_copy), "--n", "1", "--no-progress",
                 "--out", str(run_copy / "eval")]) == 2
    err = capsys.readouterr().err
    assert "final_model' is damaged" in err and "model.safetensors" in err
    assert not (run_copy / "eval").exists()
