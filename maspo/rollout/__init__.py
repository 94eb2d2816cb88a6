"""Samplers that turn prompts into completions: HF `generate` (CPU/GPU)."""

from maspo.rollout.hf import Rollout, sample

__all__ = ["Rollout", "sample"]
