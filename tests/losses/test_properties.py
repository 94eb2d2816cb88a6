"""Property tests (hypothesis) for the objective contracts and aggregation invariance."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maspo.losses import MODES, aggregate, names, policy_loss

finite = st.floats(min_value=math.log(1e-6), max_value=math.log(1e6), allow_nan=False)
old_logps = st.floats(min_value=math.log(1e-30), max_value=0.0, allow_nan=False)
advs = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False)


@st.composite
def batches(draw):
    b = draw(st.integers(1, 4))
    t = draw(st.integers(1, 6))
    log_r = torch.tensor(draw(st.lists(finite, min_size=b * t, max_size=b * t))).reshape(b, t)
    old = torch.tensor(draw(st.lists(old_logps, min_size=b * t, max_size=b * t))).reshape(b, t)
    adv = torch.tensor(draw(st.lists(advs, min_size=b, max_size=b)))
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).reshape(b, t)
    return log_r.double(), old.double(), adv.double(), mask


@settings(max_examples=60, deadline=None)
@given(batch=batches(), name=st.sampled_from(names()), mode=st.sampled_from(MODES))
def test_contract_holds_on_random_batches(batch, name, mode):
    log_r, old, adv, mask = batch
    logp = (old + log_r).requires_grad_(True)
    out = policy_loss(name, logp, old, adv, mask)
    loss = aggregate(out.per_token, mask, mode)
    loss.backward(retain_graph=True)
    assert torch.isfinite(loss)
    assert torch.isfinite(logp.grad).all()
    assert torch.all(logp.grad[~mask] == 0)
    assert torch.all(out.per_token[~mask] == 0)
    # the reported weight is the autograd one: d(sum of per_token)/d logp = -A * w
    logp.grad = None
    out.per_token.sum().backward()
    assert torch.allclose(logp.grad, -adv[:, None] * out.weight, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(old=st.lists(old_logps, min_size=1, max_size=8), adv=advs.filter(lambda a: a != 0),
       name=st.sampled_from(names()))
def test_unit_ratio_gives_unit_weight(old, adv, name):
    old_t = torch.tensor([old], dtype=torch.float64)
    logp = old_t.clone().requires_grad_(True)
    a = torch.tensor([adv], dtype=torch.float64)
    policy_loss(name, logp, old_t, a, torch.ones_like(logp)).per_token.sum().backward()
    assert torch.equal(-logp.grad / adv, torch.ones_like(old_t))


@settings(max_examples=40, deadline=None)
@given(batch=batches(), mode=st.sampled_from(MODES), cut=st.integers(0, 4),
       name=st.sampled_from([n for n in names() if n != "bapo"]))
def test_split_into_two_micro_batches_is_invariant(batch, mode, cut, name):
    log_r, old, adv, mask = batch
    cut = min(cut, len(adv))
    logp = (old + log_r).requires_grad_(True)
    full = aggregate(policy_loss(name, logp, old, adv, mask).per_token, mask, mode)
    full.backward()
    full_grad = logp.grad.clone()
    logp.grad = None
    counts = {"num_tokens": mask.sum(), "num_seqs": (mask.sum(-1) > 0).sum(),
              "norm_len": mask.shape[1]}
    total = 0.0
    for rows in (slice(0, cut), slice(cut, None)):
        if logp[rows].shape[0] == 0:
            continue
        out = policy_loss(name, logp[rows], old[rows], adv[rows], mask[rows])
        part = aggregate(out.per_token, mask[rows], mode, **counts)
        part.backward()
        total += part.item()
    assert math.isclose(total, full.item(), rel_tol=1e-9, abs_tol=1e-9)
    assert torch.allclose(logp.grad, full_grad, rtol=1e-9, atol=1e-9)
