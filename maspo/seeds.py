"""Seeds derived from tuples of integers: (train.seed, step, draw) for a draw's prompts
and sampling, (that seed, group) for one group's sampling noise.

Derived with numpy's ``SeedSequence`` (a hash of the whole tuple), so seeds of different
tuples do not collide the way ``seed * stride + step`` sums can, and a seed depends only
on its tuple, never on what was drawn before it.
"""

from __future__ import annotations

import numpy as np

SEED_BITS = 63  # torch.Generator.manual_seed takes any non-negative int64


def derive_seed(*keys: int) -> int:
    """A seed fixed by ``keys`` (non-negative integers), in [0, 2**63)."""
    state = np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0]
    return int(state) >> (64 - SEED_BITS)
