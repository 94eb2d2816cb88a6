"""verl plugin entry point (group ``verl.plugins``): ``import verl`` imports this module.

It registers maspo's objectives by importing ``maspo.integrations.verl``. verl 0.9 logs a
failing plugin only at DEBUG level (the user would just see "Unsupported loss mode"), so a
failure is logged here as a WARNING with its cause before it propagates.
"""

import logging

try:
    from maspo.integrations import verl as _registered  # noqa: F401  registers on import
except Exception as err:  # shown to the user, then re-raised for verl to record
    logging.getLogger("maspo").warning(
        "maspo's verl plugin failed to load, so maspo loss modes are unavailable: %s: %s",
        type(err).__name__, err)
    raise
