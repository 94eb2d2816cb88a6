"""Group advantage estimators and the entropy advantage, on cases small enough to do by hand."""

from __future__ import annotations

import math

import pytest
import torch

from maspo import advantages


def test_grpo_by_hand():
    # group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3)
    a = advantages.grpo(torch.tensor([1.0, 0.0, 0.0, 1.0]), 4)
    z = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert torch.allclose(a, torch.tensor([z, -z, -z, z]))


def test_dr_grpo_and_rloo_by_hand():
    r = torch.tensor([3.0, 1.0, 2.0])
    assert torch.allclose(advantages.dr_grpo(r, 3), torch.tensor([1.0, -1.0, 0.0]))
    # RLOO: 3 - (1 + 2)/2 = 1.5, 1 - 2.5 = -1.5, 2 - 2 = 0
    assert torch.allclose(advantages.rloo(r, 3), torch.tensor([1.5, -1.5, 0.0]))


@pytest.mark.parametrize("name", sorted(advantages.ESTIMATORS))
def test_ties_and_singleton_groups_give_zeros(name):
    tied = torch.tensor([0.7, 0.7, 0.7, 1.0, 0.0, 1.0])
    a = advantages.estimate(name, tied, 3)
    assert torch.equal(a[:3], torch.zeros(3))
    assert torch.all(a[3:] != 0)
    single = advantages.estimate(name, torch.tensor([1.0, 0.0, 5.0]), 1)
    assert torch.equal(single, torch.zeros(3))


def test_groups_are_independent():
    r = torch.tensor([1.0, 0.0, 10.0, 30.0])
    a = advantages.dr_grpo(r, 2)
    assert torch.allclose(a, torch.tensor([0.5, -0.5, -10.0, 10.0]))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="group_size"):
        advantages.grpo(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="'gae'"):
        advantages.estimate("gae", torch.zeros(4), 2)


def test_entropy_advantage_by_hand():
    adv = torch.tensor([1.0, -1.0, 0.0])
    ent = torch.tensor([[0.5, 3.0], [0.5, 3.0], [2.0, 2.0]])
    out = advantages.entropy_advantage(adv, ent)  # alpha 0.4, kappa 2
    # min(0.4 * H, |A| / 2): 0.2 or capped at 0.5; zero advantage gets nothing
    expected = torch.tensor([[1.2, 1.5], [-0.8, -0.5], [0.0, 0.0]])
    assert torch.allclose(out, expected)
    assert torch.all(torch.sign(out[:2]) == torch.sign(adv[:2, None]))


def test_entropy_advantage_carries_no_gradient_through_entropy():
    ent = torch.tensor([[0.5, 3.0]], requires_grad=True)
    out = advantages.entropy_advantage(torch.tensor([1.0]), ent, mask=torch.tensor([[1, 0]]))
    assert out[0, 1] == 0
    assert not out.requires_grad
    with pytest.raises(ValueError, match="kappa"):
        advantages.entropy_advantage(torch.tensor([1.0]), ent, kappa=1.0)
