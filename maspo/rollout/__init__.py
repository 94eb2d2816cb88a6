"""Rollout engines: the trainer asks one for completions (`RolloutEngine.generate`).

`LocalSampler` samples in process (CPU or GPU) with each prompt's prefix shared by its G
samples; an inference server (vLLM) would be another engine with the same contract.
"""

from maspo.rollout.engine import Rollout, RolloutEngine, SamplingSettings
from maspo.rollout.sampler import LocalSampler, sample

__all__ = ["LocalSampler", "Rollout", "RolloutEngine", "SamplingSettings", "sample"]
