"""maspo: RL with verifiable rewards for language models (MASPO, DGPO and baselines)."""

__version__ = "0.1.0"
