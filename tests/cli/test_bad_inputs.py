"""Every bad input a user can give a command: exit code 2, one line on stderr naming the
culprit, no traceback, and nothing written or changed on disk.

Placeholders in the argument lists: {model} the tiny model, {run} a finished run,
{file} an existing file, {done} a folder holding an earlier evaluation, {tmp} the test's
folder, {cuda} a CUDA device this machine lacks, {config-only} / {truncated} /
{no-tokenizer} / {bad-config} broken copies of the tiny model.
"""

from __future__ import annotations

import pytest
import torch

from maspo.cli import main
from maspo.testing import tiny_overrides

NEW_RUN = "{tmp}/new-run"


def _train(*bad: str) -> list[str]:
    """A valid tiny-model training command with ``bad`` appended (the last value wins)."""
    return ["train", "--no-progress", *tiny_overrides("{model}", NEW_RUN), *bad]


def _eval(*bad: str) -> list[str]:
    return ["eval", "{model}", "--data", "arithmetic", "--limit", "2", "--n", "2",
            "--out", "{tmp}/eval-out", "--no-progress", *bad]


def _compare(*bad: str) -> list[str]:
    return ["compare", "--objectives", "grpo", "--out", "{tmp}/cmp", "--no-progress",
            *tiny_overrides("{model}"), *bad]


CASES = [
    # --- train: numbers that pass type checks but not meaning
    ("train-lr-inf", _train("optim.lr=inf"), "'optim.lr'"),
    ("train-lr-nan", _train("optim.lr=nan"), "'optim.lr'"),
    ("train-lr-zero", _train("optim.lr=0"), "'optim.lr'"),
    ("train-temperature-inf", _train("rollout.temperature=inf"), "'rollout.temperature'"),
    ("train-eval-temperature-zero", _train("train.eval_temperature=0"),
     "'train.eval_temperature'"),
    ("train-beta-one", _train("optim.betas=[0.9,1.0]"), "'optim.betas'"),
    ("train-beta-negative", _train("optim.betas=[-0.1,0.99]"), "'optim.betas'"),
    ("train-weight-decay", _train("optim.weight_decay=-0.1"), "'optim.weight_decay'"),
    ("train-grad-clip", _train("optim.grad_clip=-1"), "'optim.grad_clip'"),
    ("train-seed-negative", _train("train.seed=-1"), "'train.seed'"),
    ("train-seed-huge", _train("train.seed=4294967296"), "'train.seed'"),
    ("train-steps-zero", _train("train.steps=0"), "'train.steps'"),
    ("train-lora-dropout", _train("model.lora.dropout=1.0"), "'model.lora.dropout'"),
    ("train-lora-rank", _train("model.lora.rank=0"), "'model.lora.rank'"),
    ("train-top-p", _train("rollout.top_p=0"), "'rollout.top_p'"),
    # --- train: devices
    ("train-device-unknown", _train("train.device=gpu"), "'train.device'"),
    ("train-device-malformed", _train("train.device=cuda:x"), "'train.device'"),
    ("train-device-missing", _train("train.device={cuda}"), "train.device={cuda}"),
    # --- train: output paths
    ("train-output-is-file", _train("train.output_dir={file}"), "is a file"),
    ("train-output-under-file", _train("train.output_dir={file}/run"), "taken.txt"),
    ("train-existing-run", _train("train.output_dir={run}"), "--resume"),
    ("train-output-in-proc", _train("train.output_dir=/proc/maspo-x"),  # passes os.access
     "'/proc/maspo-x' cannot be written: '/proc' takes no new folder"),
    # --- train: model folders
    ("train-model-config-only", _train("model.path={config-only}"), "no weights"),
    ("train-model-truncated", _train("model.path={truncated}"), "truncated"),
    ("train-model-no-tokenizer", _train("model.path={no-tokenizer}"), "tokenizer"),
    ("train-model-bad-config", _train("model.path={bad-config}"), "config.json"),
    ("train-model-missing", _train("model.path={tmp}/no-model"), "no-model"),
    # --- hub ids (the suite's hub cache, offline: tests/conftest.py)
    ("train-model-hub-missing", _train("model.path=test-org/absent-model"),
     "model 'test-org/absent-model' is neither a local path nor in the Hugging Face cache"),
    ("train-model-hub-revision", _train("model.path=test-org/absent-model@v1"),
     "model 'test-org/absent-model@v1' is neither"),
    ("train-data-hub-missing", _train("data.path=test-org/absent-set"),
     "data set 'test-org/absent-set' is neither a local path nor in the Hugging Face cache"),
    ("train-data-id-malformed", _train("data.path=openai/gsm8k:main"),
     "'openai/gsm8k:main' must read org/name[@revision][:config=NAME][,split=NAME]"),
    ("train-test-data-hub-missing", _train("data.path=test-org/absent-set",
                                           "data.test_path=test-org/absent-set:split=test"),
     "data set 'test-org/absent-set' is neither"),
    # --- train: presets, options, resume
    ("train-unknown-preset", ["train", "--config", "nosuch"], "'nosuch'"),
    ("train-missing-yaml", ["train", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    ("train-unknown-option", _train("--bogus"), "--bogus"),
    ("train-resume-no-dir", ["train", "--resume"], "train.output_dir"),
    ("train-resume-not-a-run", ["train", "--resume", "train.output_dir={tmp}/nothing"],
     "config.yaml"),
    ("train-resume-with-config", ["train", "--resume", "--config", "grpo",
                                  "train.output_dir={run}"], "--config"),
    ("train-resume-changed-key", ["train", "--resume", "train.output_dir={run}",
                                  "rollout.group_size=8"], "rollout.group_size"),
    ("train-resume-bad-steps", ["train", "--resume", "train.output_dir={run}", "train.steps=0"],
     "'train.steps'"),
    # --- config
    ("config-lr-inf", ["config", "optim.lr=inf"], "'optim.lr'"),
    ("config-unknown-preset", ["config", "--config", "nosuch"], "'nosuch'"),
    # --- eval
    ("eval-temperature-inf", _eval("--temperature", "inf"), "--temperature"),
    ("eval-temperature-zero", _eval("--temperature", "0"), "--temperature"),
    ("eval-top-p-zero", _eval("--top-p", "0"), "--top-p"),
    ("eval-top-p-nan", _eval("--top-p", "nan"), "--top-p"),
    ("eval-n-zero", _eval("--n", "0"), "--n"),
    ("eval-k-above-n", _eval("--k", "3"), "--k"),
    ("eval-greedy-n", _eval("--greedy"), "--greedy"),
    ("eval-batch-size", _eval("--batch-size", "0"), "--batch-size"),
    ("eval-max-new-tokens", _eval("--max-new-tokens", "0"), "--max-new-tokens"),
    ("eval-limit", _eval("--limit", "0"), "--limit"),
    ("eval-test-size", _eval("--test-size", "0"), "--test-size"),
    ("eval-data-seed", _eval("--data-seed", "-1"), "--data-seed"),
    ("eval-task-setting", _eval("--data", "arithmetic:digitz=2"), "digitz"),
    ("eval-data-missing", _eval("--data", "{tmp}/nope.jsonl"), "nope.jsonl"),
    ("eval-device-unknown", _eval("--device", "tpu"), "--device"),
    ("eval-device-missing", _eval("--device", "{cuda}"), "--device={cuda}"),
    ("eval-out-is-file", _eval("--out", "{file}"), "is a file"),
    ("eval-out-under-file", _eval("--out", "{file}/x"), "taken.txt"),
    ("eval-out-holds-eval", _eval("--out", "{done}"), "eval.json"),
    ("eval-no-data", ["eval", "{model}", "--out", "{tmp}/eval-out"], "--data"),
    ("eval-model-config-only", ["eval", "{config-only}", "--data", "arithmetic"], "no weights"),
    ("eval-model-truncated", ["eval", "{truncated}", "--data", "arithmetic"], "truncated"),
    ("eval-model-no-tokenizer", ["eval", "{no-tokenizer}", "--data", "arithmetic"],
     "tokenizer"),
    ("eval-model-missing", ["eval", "{tmp}/no-model", "--data", "arithmetic"], "no-model"),
    ("eval-model-hub-missing", ["eval", "test-org/absent-model", "--data", "arithmetic"],
     "model 'test-org/absent-model' is neither a local path nor in the Hugging Face cache"),
    ("eval-data-hub-missing", _eval("--data", "test-org/absent-set:config=main"),
     "data set 'test-org/absent-set:config=main' is neither"),
    # --- compare
    ("compare-eval-temperature-zero", _compare("--eval-temperature", "0"),
     "--eval-temperature"),
    ("compare-eval-temperature-inf", _compare("--eval-temperature", "inf"),
     "--eval-temperature"),
    ("compare-target", _compare("--target", "2"), "--target"),
    ("compare-seeds", _compare("--seeds", "a"), "--seeds"),
    ("compare-objective", _compare("--objectives", "ppo9"), "ppo9"),
    ("compare-out-is-file", _compare("--out", "{file}"), "is a file"),
    ("compare-device-missing", _compare("--device", "{cuda}"), "--device={cuda}"),
    ("compare-per-run-key", _compare("train.seed=3"), "train.seed"),
    ("compare-lr-inf", _compare("optim.lr=inf"), "'optim.lr'"),
    ("compare-n-zero", _compare("--n", "0"), "--n"),
    ("compare-model-hub-missing", _compare("model.path=test-org/absent-model"),
     "model 'test-org/absent-model' is neither"),
    ("compare-data-hub-missing", _compare("data.path=test-org/absent-set"),
     "data set 'test-org/absent-set' is neither"),
    # --- plot
    ("plot-format", ["plot", "{run}", "--out", "{tmp}/p.foo"], ".foo"),
    ("plot-out-is-folder", ["plot", "{run}", "--out", "{tmp}"], "folder"),
    ("plot-out-under-file", ["plot", "{run}", "--out", "{file}/p.png"], "taken.txt"),
    ("plot-not-a-run", ["plot", "{run}", "{tmp}/nothing"], "not a run directory"),
    ("plot-no-runs", ["plot"], "RUN_DIR"),
    # --- the command itself
    ("unknown-command", ["trian"], "'trian'"),
    ("no-command", [], "command"),
]


def _missing_cuda() -> str:
    """A CUDA device this machine cannot provide (none at all, or one past the last)."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def _snapshot(root) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("argv", "named"), [(argv, named) for _, argv, named in CASES],
                         ids=[case for case, _, _ in CASES])
def test_bad_input_is_one_sentence_exit_2_and_nothing_changes(
        argv, named, tmp_path, tiny_model_dir, finished_run, broken_models, capsys):
    (tmp_path / "taken.txt").write_text("precious\n")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "eval.json").write_text('{"earlier": true}\n')
    values = {"model": str(tiny_model_dir), "run": str(finished_run), "tmp": str(tmp_path),
              "file": str(tmp_path / "taken.txt"), "done": str(tmp_path / "done"),
              "cuda": _missing_cuda(), **{k: str(v) for k, v in broken_models.items()}}
    argv = [arg.format(**values) for arg in argv]
    named = named.format(**values)
    before = _snapshot(tmp_path), _snapshot(finished_run)

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert named in err, err
    assert (_snapshot(tmp_path), _snapshot(finished_run)) == before  # nothing written or changed
