"""Adapters to other training engines; the only code in maspo that imports verl or TRL.

- ``maspo.integrations.verl``: maspo objectives as verl policy-loss modes (the ``verl``
  extra: ``pip install ".[verl]"`` in a clone; registered by ``import verl`` through the
  ``verl.plugins`` entry point).
- ``maspo.integrations.trl``: ``MaspoGRPOTrainer``, TRL's GRPOTrainer with maspo objectives
  (the ``trl`` extra: ``pip install ".[trl]"`` in a clone).

See docs/integrations.md.
"""
