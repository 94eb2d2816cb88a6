"""The last checkpoint shares the final model's weights file (a hard link) instead of
writing the same bytes again, and only where the file holds exactly its weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

from maspo.checkpoint import (
    WEIGHTS_FILE,
    SharedWeights,
    checkpoint_problem,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from maspo.config import load_config
from maspo.testing import tiny_overrides
from maspo.trainer import train


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_last_checkpoint_links_the_final_models_weights(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    train(load_config(None, tiny_overrides(tiny_model_dir, out, **{"train.save_every": 1})),
          progress=False)
    last = out / "checkpoints" / "step-000002"
    final = out / "final_model" / "model.safetensors"
    assert os.path.samefile(last / WEIGHTS_FILE, final)  # one file, two names
    earlier = out / "checkpoints" / "step-000001" / WEIGHTS_FILE
    assert earlier.stat().st_nlink == 1  # a checkpoint with no final model: its own file
    listed = json.loads((last / "manifest.json").read_text())["files"][WEIGHTS_FILE]
    sealed = json.loads((out / "final_model" / "maspo-manifest.json").read_text())["files"]
    assert listed["sha256"] == sealed["model.safetensors"]["sha256"] == _sha256(final)
    assert checkpoint_problem(last) is None
    weights = load_file(final)

    shutil.rmtree(out / "final_model")  # as `maspo compare` does once a run is evaluated
    assert latest_checkpoint(out / "checkpoints") == last  # still intact
    kept = load_file(last / WEIGHTS_FILE)
    assert kept.keys() == weights.keys()
    assert all(torch.equal(kept[k], weights[k]) for k in weights)


def _parts():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def test_a_file_that_does_not_hold_exactly_the_weights_is_not_linked(tmp_path):
    model, optimizer, scheduler = _parts()
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    changed = {**weights, "1.bias": weights["1.bias"] + 1e-6}  # one value off
    extra = {**weights, "2.weight": torch.zeros(1)}  # one tensor more
    halved = {k: v.to(torch.bfloat16) for k, v in weights.items()}  # another dtype
    same = dict(weights)
    for step, tensors in enumerate((changed, extra, halved, same), start=1):
        source = tmp_path / f"source-{step}.safetensors"
        save_file(tensors, source)
        path = save_checkpoint(tmp_path / "checkpoints", step, model, optimizer, scheduler,
                               {}, keep=10, shared=SharedWeights(source, _sha256(source)))
        assert os.path.samefile(path / WEIGHTS_FILE, source) == (tensors is same), step
        assert checkpoint_problem(path) is None
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        load_checkpoint(path, model, optimizer, scheduler)
        assert all(torch.equal(p, weights[k]) for k, p in model.named_parameters()), step
