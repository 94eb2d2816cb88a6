"""Hub model ids through the real huggingface_hub, against a hub cache this suite lays out
itself (HF_HUB_CACHE, HF_HUB_OFFLINE=1: see tests/conftest.py): ids and revisions resolve
to snapshots, a local folder wins, a miss is one sentence, a run pins the commit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maspo.cli import main
from maspo.config import load_config
from maspo.errors import UserError
from maspo.hub import DATASET, MODEL, HubId, keeps_pin, parse_hub_id
from maspo.model_files import check_model_spec
from maspo.models import resolve_model
from maspo.run import pin_config
from maspo.testing import place_in_hub_cache, save_tiny_model, tiny_overrides


@pytest.fixture(scope="module")
def tiny_repo(hub_cache, tmp_path_factory) -> dict[str, str]:
    """``test-org/tiny-lm``: main holds the tiny model of seed 0, branch v2 that of seed 1."""
    root = tmp_path_factory.mktemp("hub-models")
    return {
        "main": place_in_hub_cache(hub_cache, "test-org/tiny-lm",
                                   save_tiny_model(root / "seed0", seed=0)),
        "v2": place_in_hub_cache(hub_cache, "test-org/tiny-lm",
                                 save_tiny_model(root / "seed1", seed=1), branch="v2"),
    }


def _snapshot(hub_cache: Path, commit: str) -> Path:
    return hub_cache / "models--test-org--tiny-lm" / "snapshots" / commit


@pytest.mark.parametrize(("spec", "expected"), [
    ("Qwen/Qwen2.5-0.5B-Instruct", HubId(MODEL, "Qwen/Qwen2.5-0.5B-Instruct")),
    ("org/name@v1.0", HubId(MODEL, "org/name", "v1.0")),
    ("org/name@refs/pr/3", HubId(MODEL, "org/name", "refs/pr/3")),
    ("./org/name", None), ("/models/qwen", None), ("~/qwen", None), ("default", None),
    ("org/name:config=x", None),  # a model id takes no config
])
def test_model_ids_are_told_from_local_paths(spec, expected) -> None:
    assert parse_hub_id(spec, MODEL) == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("openai/gsm8k", HubId(DATASET, "openai/gsm8k")),
    ("openai/gsm8k:config=main", HubId(DATASET, "openai/gsm8k", config="main")),
    ("openai/gsm8k@abc:config=main,split=test",
     HubId(DATASET, "openai/gsm8k", "abc", "main", "test")),
    ("org/set:split=2024", HubId(DATASET, "org/set", split="2024")),  # YAML 2024 -> "2024"
    ("data/train.jsonl", None),  # a missing local file stays a local path
    ("gsm8k.jsonl", None),
])
def test_dataset_ids_name_config_and_split(spec, expected) -> None:
    assert parse_hub_id(spec, DATASET) == expected
    if expected is not None:
        assert parse_hub_id(str(expected), DATASET) == expected  # str() is the same id


@pytest.mark.parametrize("spec", ["openai/gsm8k:main", "openai/gsm8k:config=main,splt=test",
                                  "openai/gsm8k@:config=main"])
def test_a_malformed_dataset_id_is_one_sentence_with_the_form(spec) -> None:
    with pytest.raises(UserError, match=r"^data set id .*(org/name\[@revision\]|empty "
                                        "revision)"):
        parse_hub_id(spec, DATASET)


def test_an_id_resolves_to_its_snapshot_and_a_revision_to_its_own(tiny_repo, hub_cache):
    assert check_model_spec("test-org/tiny-lm") == _snapshot(hub_cache, tiny_repo["main"])
    assert resolve_model("test-org/tiny-lm@v2") == _snapshot(hub_cache, tiny_repo["v2"])
    pinned = f"test-org/tiny-lm@{tiny_repo['v2']}"
    assert resolve_model(pinned) == _snapshot(hub_cache, tiny_repo["v2"])


def test_a_local_folder_wins_over_the_hub(tiny_repo, tmp_path, monkeypatch):
    save_tiny_model(tmp_path / "test-org" / "tiny-lm", seed=5)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("test-org/tiny-lm") == Path("test-org/tiny-lm")
    config = load_config(None, ["model.path=test-org/tiny-lm"])
    assert pin_config(config).model.path == "test-org/tiny-lm"  # nothing to pin


@pytest.mark.parametrize(("spec", "said"), [
    ("test-org/no-such-model", "model 'test-org/no-such-model' is neither a local path nor in "
     "the Hugging Face cache"),
    ("test-org/tiny-lm@v9", "model 'test-org/tiny-lm@v9' is neither a local path nor in the "
     "Hugging Face cache"),
    ("test-org/tiny-lm@" + "0" * 40, f"model 'test-org/tiny-lm@{'0' * 40}' is neither a local "
     "path nor in the Hugging Face cache"),
])
def test_an_id_missing_offline_is_one_sentence_naming_it(tiny_repo, hub_cache, spec, said):
    with pytest.raises(UserError) as missed:
        check_model_spec(spec)
    message = str(missed.value)
    assert message.startswith(said) and "\n" not in message
    assert str(hub_cache) in message and "HF_HUB_OFFLINE is set" in message


UNREACHABLE = """
import json, sys
from maspo.errors import UserError
from maspo.model_files import check_model_spec
found = {}
for spec in sys.argv[1:]:
    try:
        found[spec] = str(check_model_spec(spec))
    except UserError as err:
        found[spec] = "error: " + str(err)
print(json.dumps(found))
"""


def test_with_the_hub_unreachable_the_cache_serves_and_a_miss_is_one_sentence(
        tiny_repo, hub_cache, tmp_path):
    """Online mode (HF_HUB_OFFLINE unset) with the Hub's address refusing connections, as
    on a machine whose network is down: nothing leaves this machine."""
    with socket.socket() as closed:  # a local port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    pinned = f"test-org/tiny-lm@{tiny_repo['main']}"
    specs = ["test-org/tiny-lm", pinned, "test-org/not-cached"]
    done = subprocess.run([sys.executable, "-c", UNREACHABLE, *specs], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    snapshot = str(_snapshot(hub_cache, tiny_repo["main"]))
    assert found["test-org/tiny-lm"] == found[pinned] == snapshot
    assert found["test-org/not-cached"] == (
        "error: model 'test-org/not-cached' is neither a local path nor in the Hugging Face "
        f"cache '{hub_cache}', and the Hub could not be reached; check the connection (or "
        "HF_ENDPOINT) and try again.")


def test_pins_keep_the_commit_a_run_started_from(tiny_repo):
    config = load_config(None, ["model.path=test-org/tiny-lm"])
    pinned = pin_config(config)
    assert pinned.model.path == f"test-org/tiny-lm@{tiny_repo['main']}"
    # resumed: the id as first given (no revision, or a branch) keeps the saved commit
    for given in ("test-org/tiny-lm", "test-org/tiny-lm@v2"):
        again = load_config(None, [f"model.path={given}"])
        assert pin_config(again, saved=pinned).model.path == pinned.model.path
        assert keeps_pin(pinned.model.path, given, MODEL)
    other = f"test-org/tiny-lm@{tiny_repo['v2']}"
    assert not keeps_pin(pinned.model.path, other, MODEL)  # another commit is a change
    assert not keeps_pin(pinned.model.path, "test-org/other-lm", MODEL)


def test_train_and_eval_take_a_hub_id_and_a_resume_keeps_its_weights(
        tiny_repo, hub_cache, tmp_path, capsys):
    """A LoRA run of test-org/tiny-lm (its checkpoints hold adapters only, the base comes
    from model.path) pins main's commit; main then moves to other weights: the resumed run
    trains on the base it started from, as a run given that commit does."""
    run = tmp_path / "run"
    lora = {"train.steps": 1, "model.lora.enabled": "true"}
    assert main(["train", "--no-progress", *tiny_overrides("test-org/tiny-lm", run,
                                                           **lora)]) == 0
    saved = (run / "config.yaml").read_text()
    assert f"path: test-org/tiny-lm@{tiny_repo['main']}\n" in saved

    refs = hub_cache / "models--test-org--tiny-lm" / "refs"
    shutil.copy(refs / "main", tmp_path / "main-ref")
    (refs / "main").write_text(tiny_repo["v2"])  # the branch moves on
    try:
        assert main(["train", "--no-progress", "--resume", f"train.output_dir={run}",
                     "train.steps=2", "model.path=test-org/tiny-lm"]) == 0
        assert (run / "config.yaml").read_text() == saved.replace("steps: 1", "steps: 2")
        def adapters(run_dir: Path) -> dict[str, torch.Tensor]:
            return load_file(run_dir / "checkpoints" / "step-000002" / "weights.safetensors")

        for branch in ("main", "v2"):  # an uninterrupted run on each commit
            main(["train", "--no-progress", *tiny_overrides(
                f"test-org/tiny-lm@{tiny_repo[branch]}", tmp_path / branch,
                **{**lora, "train.steps": 2})])
        ours, on_main, on_v2 = adapters(run), adapters(tmp_path / "main"), adapters(tmp_path / "v2")
        assert all(torch.equal(ours[k], on_main[k]) for k in on_main)
        assert not all(torch.equal(ours[k], on_v2[k]) for k in on_v2)

        out = tmp_path / "eval"
        assert main(["eval", str(run / "checkpoints" / "step-000002"), "--data", "arithmetic",
                     "--limit", "2", "--n", "1", "--out", str(out), "--no-progress"]) == 0
        assert main(["eval", "test-org/tiny-lm", "--data", "arithmetic", "--limit", "2",
                     "--n", "1", "--out", str(tmp_path / "eval-hub"), "--no-progress"]) == 0
    finally:
        shutil.copy(tmp_path / "main-ref", refs / "main")
    record = json.loads((tmp_path / "eval-hub" / "eval.json").read_text())
    assert f"model test-org/tiny-lm@{tiny_repo['v2']}" in json.dumps(record)
    capsys.readouterr()
