"""Typed frozen dataclasses built from nested dicts (YAML, overrides) and back.

``build(cls, data)`` checks every value against its field's annotation, by key, and
coerces only where lossless (int -> float, list -> tuple, YAML 1.1's ``1e-5`` text ->
float); an unknown key or a wrong type is a one-sentence ``UserError`` naming the key.
``to_dict`` is the inverse (tuples as lists, for YAML and JSON). ``Key`` and ``Bounds``
state what a key allows (a range, choices). Nothing here knows the run config's
sections: ``maspo.config`` holds the schema and its table of keys.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from maspo.errors import FieldError, UserError
from maspo.spec_text import yaml_number

UNMERGED_MAPPINGS = ("params", "task_settings", "fields")
"""Mapping fields a preset replaces whole (an objective's parameters belong together)."""


def check_type(key: str, value: Any, annotation: Any) -> Any:
    """Coerce ``value`` to ``annotation`` where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:  # an objective parameter or task setting: checked by its owner
        return yaml_number(value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(key, value, arg)
            except UserError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_type(key, v, args[0]) for v in value)
        if len(value) != len(args):
            raise UserError(f"config key {key!r} must have {len(args)} items, got {value!r}")
        return tuple(check_type(key, v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r} must be a mapping, got {value!r}")
        return {str(k): check_type(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"config key {key!r} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise UserError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from nested ``data`` (missing keys: defaults)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise UserError(f"unknown config key {full!r}; known keys here: "
                            f"{', '.join(sorted(prefix + k for k in known))}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise UserError(f"config key {full!r} must be a mapping of its fields")
            kwargs[key] = build(annotation, value, f"{full}.")
        else:
            kwargs[key] = check_type(full, value, annotation)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base`` section by section, as a preset over the defaults."""
    merged = dict(base)
    for key, value in update.items():
        if (isinstance(value, dict) and isinstance(merged.get(key), dict)
                and key not in UNMERGED_MAPPINGS):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; mappings are flattened down to their leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changes(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of every key whose value differs, keys in order, of two
    dataclasses or nested dicts (a saved config's YAML)."""
    a = flatten(old if isinstance(old, dict) else to_dict(old))
    b = flatten(new if isinstance(new, dict) else to_dict(new))
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


# ---------------------------------------------------------------------------------------
# What a key allows.


@dataclass(frozen=True)
class Bounds:
    """Allowed values of a numeric key (each item of a tuple-valued key)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``low`` itself is not allowed
    high_open: bool = False  # ``high`` itself is not allowed
    why: str = ""  # the reason, appended to the message

    def check(self, key: str, value: float, what: str = "config key") -> None:
        too_low = self.low is not None and (value < self.low or
                                            (self.low_open and value == self.low))
        too_high = self.high is not None and (value > self.high or
                                              (self.high_open and value == self.high))
        if too_low or too_high:
            raise FieldError(key, f" must be {self.describe()}, got {value!r}"
                             + (f": {self.why}" if self.why else ""), what)

    def describe(self) -> str:
        if self.low is not None and self.low == self.high:
            return f"{self.low:g}"
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
AT_LEAST_ONE = Bounds(1)


@dataclass(frozen=True)
class Key:
    """One config key: what it is, and the values it allows."""

    doc: str  # one line, shown by `maspo train --help`
    bounds: Bounds | None = None  # a numeric key's range (each item of a tuple's)
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None  # (a registry's: late)

    def check(self, key: str, value: Any, what: str = "config key") -> None:
        """FieldError naming ``key`` unless ``value`` is in range / among the choices."""
        if value is None:
            return
        if self.bounds is not None:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                self.bounds.check(key, item, what)
        if self.choices is not None:
            known = self.choices() if callable(self.choices) else self.choices
            if value not in known:
                raise FieldError(key, f": {value!r} is not one of {', '.join(known)}", what)

    def describe(self) -> str:
        shown = self.bounds and self.bounds.describe()
        if self.bounds and self.bounds.low == self.bounds.high:
            shown = f"must be {shown}"
        allowed = (f"; {shown}" if shown else "") + (
            f"; one of {'|'.join(self.choices)}" if isinstance(self.choices, tuple) else "")
        return self.doc + allowed
