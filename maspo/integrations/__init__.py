"""Adapters to other training engines; the only code in maspo that imports verl or TRL.

- ``maspo.integrations.verl``: maspo objectives as verl policy-loss modes (``pip install
  "maspo[verl]"``; registered by ``import verl`` through the ``verl.plugins`` entry point).
- ``maspo.integrations.trl``: ``MaspoGRPOTrainer``, TRL's GRPOTrainer with maspo objectives
  (``pip install "maspo[trl]"``).

See docs/integrations.md.
"""
