"""Text a user writes on the command line, read into values: ``key=value`` overrides and
``name:key=value,...`` specs. A leaf module: it imports nothing of maspo but its errors,
so the config, the hub ids and the objective specs all read text the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from maspo.errors import UserError

# YAML 1.1 (PyYAML) reads an exponent without a dot, such as 1e-5, as text
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")


def yaml_number(value: Any) -> Any:
    """``value``, or the float it spells when YAML 1.1 left a number like ``1e-5`` as text."""
    if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_scalar(raw: str) -> Any:
    """One command-line value read as YAML (``3``, ``true``, ``[a, b]``); text that is
    not valid YAML stays text, and nothing at all is the empty string."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def parse_named_spec(spec: str, what: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` -> (name, settings), as an objective
    spec of ``maspo compare`` or a task spec of ``maspo eval --data`` is written; values
    are YAML scalars. ``what`` names the spec in the error (e.g. "objective spec")."""
    name, _, rest = spec.strip().partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{what} {spec!r}: {item!r} must look like key=value")
        value = parse_scalar(raw) if raw.strip() else None  # "key=" gives None
        settings[key.strip()] = yaml_number(value)
    return name.strip(), settings


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {text!r} must look like section.key=value")
    value = parse_scalar(raw)
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def merge_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overrides merge into mappings key by key (``loss.params.alpha=0.5`` keeps others)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_override(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_override_texts(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with every ``section.key=value`` of ``overrides`` merged in, in order."""
    for text in overrides:
        data = merge_override(data, parse_override(text))
    return data


def override_value(overrides: Sequence[str], key: str) -> Any:
    """The value the overrides give ``section.key`` (the last one wins), else None."""
    value = None
    for text in overrides:
        node: Any = parse_override(text)
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            value = node
    return value
