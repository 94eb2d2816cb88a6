"""The optimizer: torch's fused AdamW by default, the per-tensor loop on request."""

from __future__ import annotations

import pytest
import torch

from maspo.config import load_config
from maspo.testing import tiny_model, tiny_tokenizer
from maspo.update import Learner


def _learner(fused: str) -> Learner:
    model = tiny_model(tiny_tokenizer())
    optim = load_config(None, [f"optim.fused={fused}", "optim.lr=1e-2"]).optim
    return Learner.create(model, None, optim, torch.device("cpu"), warmup_steps=0)


@pytest.mark.parametrize(("fused", "kernel"), [("true", True), ("false", None)])
def test_optim_fused_picks_the_kernel_and_both_take_the_same_step(fused, kernel):
    """``optim.fused`` (default true) picks torch's fused AdamW; false keeps the
    per-tensor loop. Both move the weights by the same AdamW step, up to the last bits."""
    learner, loop = _learner(fused), _learner("false")
    assert learner.optimizer.param_groups[0]["fused"] is kernel
    assert load_config(None, []).optim.fused is True
    before = [p.detach().clone() for p in learner.params]
    for run in (learner, loop):
        for p in run.params:
            p.grad = torch.full_like(p, 0.5)
        run.optimizer.step()
    for p, q, b in zip(learner.params, loop.params, before, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(p - b, torch.full_like(p, -1e-2), rtol=1e-4, atol=1e-7)
