"""What ``maspo compare`` and ``maspo probe`` are asked for: objective specs and seeds.

An objective spec is ``name`` or ``name:key=value,key=value`` (values are YAML scalars,
``maspo.spec_text``), e.g. ``maspo:mass_adaptive=false``: a registered loss with
parameter overrides, checked against the registry when it is read. Both commands train
or probe each spec with each seed on one base config, whose overrides may not set what
they set per run (``PER_RUN_KEYS``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maspo.errors import UserError
from maspo.spec_text import parse_named_spec
from maspo.trackers import RunLabel

PER_RUN_KEYS = ("loss.name", "train.seed", "train.output_dir")  # set per run, not by overrides


@dataclass(frozen=True)
class Variant:
    """One objective of a comparison: a registered loss with parameter overrides."""

    spec: str  # as written, e.g. "maspo:mass_adaptive=false"
    name: str  # registered objective
    params: dict[str, Any]  # parameter overrides

    @property
    def slug(self) -> str:
        """Directory name: ``maspo--mass_adaptive-false`` (letters, digits, ``._-``)."""
        def shown(value: Any) -> str:
            return str(value).lower() if isinstance(value, bool) or value is None else str(value)

        text = self.name + "".join(f"--{k}-{shown(v)}" for k, v in self.params.items())
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def parse_variant(spec: str) -> Variant:
    """``name`` or ``name:key=value,...`` -> Variant, checked against the loss registry."""
    from maspo.losses import make_params, names

    name, params = parse_named_spec(spec, "objective spec")
    if name not in names():
        raise UserError(f"objective spec {spec!r}: unknown objective {name!r}; known: "
                        f"{', '.join(names())}")
    try:
        make_params(name, params)
    except (ValueError, TypeError) as err:
        raise UserError(f"objective spec {spec!r}: {err}") from None
    return Variant(spec.strip(), name, params)


def parse_variants(texts: Sequence[str]) -> list[Variant]:
    """Comma-separated specs (each ``--objectives`` value) -> Variants, in order.

    A comma-separated item with ``=`` but no ``:`` continues the previous spec's
    parameters, so ``grpo,maspo:mass_adaptive=false,risk_control=false`` is two specs.
    """
    specs: list[str] = []
    for text in texts:
        for item in filter(None, (part.strip() for part in text.split(","))):
            if "=" in item and ":" not in item:
                if not specs or ":" not in specs[-1]:
                    raise UserError(f"objective spec item {item!r} has no objective before it "
                                    "(write name:key=value)")
                specs[-1] += "," + item
            else:
                specs.append(item)
    if not specs:
        raise UserError("--objectives names no objective")
    variants = [parse_variant(spec) for spec in specs]
    slugs = [v.slug for v in variants]
    for variant in variants:
        if slugs.count(variant.slug) > 1:
            raise UserError(f"objective spec {variant.spec!r} is listed twice")
    return variants


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; distinct non-negative integers."""
    seeds = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        try:
            seed = int(part)
        except ValueError:
            raise UserError(f"--seeds value {part!r} is not an integer") from None
        if seed < 0 or seed in seeds:
            raise UserError(f"--seeds value {seed} must be a new non-negative integer")
        seeds.append(seed)
    if not seeds:
        raise UserError("--seeds names no seed")
    return seeds


def find_baseline(variants: Sequence[Variant], spec: str) -> Variant:
    """The variant written ``spec`` (after parsing), which every other is compared with."""
    wanted = parse_variant(spec).slug
    for variant in variants:
        if variant.slug == wanted:
            return variant
    raise UserError(f"--baseline {spec!r} is not one of --objectives "
                    f"({', '.join(v.spec for v in variants)}); add it or pick another baseline")


def check_overrides(overrides: Sequence[str]) -> None:
    """Reject overrides of what a comparison sets per run (objective, seed, output dir)."""
    for text in overrides:
        if text.partition("=")[0].strip() in PER_RUN_KEYS:
            raise UserError(f"override {text!r} is set per run by a comparison "
                            "(--objectives, --seeds, --out); remove it")


def study_label(out: Path, slug: str, seed: int) -> RunLabel:
    """A study's run in its trackers: project the study folder's name, run
    ``<objective>-seed<s>``, grouped by objective (``maspo compare`` and ``maspo probe``)."""
    return RunLabel(Path(out).resolve().name, f"{slug}-seed{seed}", group=slug)
