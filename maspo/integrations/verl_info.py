"""What verl sees in this environment: ``python -m maspo.integrations.verl_info``.

Prints the maspo and verl versions, whether maspo's plugin was loaded by ``import verl`` (and
if not, why), the policy-loss modes and advantage estimators verl then has, and whether TRL
is importable next to verl (verl 0.9's FSDP engine then fails, see docs/integrations.md).
Exits 1 when maspo's loss modes are missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import os
import sys

ENTRY_POINT_GROUP = "verl.plugins"
ENTRY_POINT_NAME = "maspo"
PROBE_MODE = "maspo"  # the loss mode of objective "maspo" (verl has no built-in of that name)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def why_not_loaded() -> str:
    """Why ``import verl`` did not register maspo's loss modes, in one sentence."""
    policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    if policy == "none":
        return "VERL_USE_EXTERNAL_PLUGINS=none turns verl's plugin discovery off"
    if policy != "auto" and ENTRY_POINT_NAME not in {p.strip() for p in policy.split(",")}:
        return (f"VERL_USE_EXTERNAL_PLUGINS={policy} does not name {ENTRY_POINT_NAME!r}; add it "
                f"to the list")
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
             if ep.name == ENTRY_POINT_NAME]
    if not found:
        return ("no 'verl.plugins' entry point named 'maspo' is installed in this environment; "
                "install maspo here (pip install \".[verl]\" in a clone of maspo, or its wheel)")
    try:
        importlib.import_module(found[0].value)
    except Exception as err:  # the reason verl only logs at DEBUG level
        return f"the plugin {found[0].value} failed to import: {type(err).__name__}: {err}"
    return "the plugin imports cleanly now; verl was probably imported before maspo was installed"


def report() -> tuple[list[str], bool]:
    """The lines to print, and whether maspo's loss modes are registered in verl."""
    import maspo

    lines = [f"python: {sys.executable}",
             f"maspo: {maspo.__version__} ({os.path.dirname(maspo.__file__)})",
             f"verl: {_version('verl')}"]
    try:
        import verl  # noqa: F401  loads the plugins, ours included
        from verl.trainer.ppo import core_algos
    except Exception as err:
        lines.append(f"verl cannot be imported: {type(err).__name__}: {err}")
        return lines, False
    loaded = PROBE_MODE in core_algos.POLICY_LOSS_REGISTRY  # read before we import anything
    policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto")
    if loaded:
        lines.append(f"maspo plugin: loaded by 'import verl' (VERL_USE_EXTERNAL_PLUGINS={policy})")
    else:
        lines.append(f"maspo plugin: NOT loaded: {why_not_loaded()}")
    registry = list(core_algos.POLICY_LOSS_REGISTRY)
    if loaded:
        from maspo.integrations.verl import VERL_BUILTIN_LOSSES, loss_mode_for
        from maspo.losses import names

        ours = {loss_mode_for(name): name for name in names()}
        lines.append("maspo loss modes: " + ", ".join(
            mode if mode == name else f"{mode} ({name})" for mode, name in ours.items()))
        lines.append("verl loss modes: " + ", ".join(
            m for m in registry if m in VERL_BUILTIN_LOSSES or m not in ours))
    else:
        lines.append("verl loss modes: " + ", ".join(registry))
    lines.append("advantage estimators: " + ", ".join(core_algos.ADV_ESTIMATOR_REGISTRY))
    if importlib.util.find_spec("trl") is not None:
        lines.append(f"WARNING: trl {_version('trl')} is importable here; verl 0.9's FSDP engine "
                     f"then imports trl's AutoModelForCausalLMWithValueHead, which TRL 1.x no "
                     f"longer has: keep verl and TRL in separate environments")
    return lines, loaded


def main() -> int:
    lines, loaded = report()
    print("\n".join(lines))
    return 0 if loaded else 1


if __name__ == "__main__":
    sys.exit(main())
