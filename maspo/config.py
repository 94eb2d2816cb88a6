"""Typed run configuration: frozen dataclasses, YAML presets, `key=value` overrides.

A run's config is built once at start-up from (defaults <- YAML preset <- command-line
overrides such as ``loss.name=grpo rollout.group_size=8``) and validated completely,
objective parameters and task settings included, before any model is loaded. Every
problem is a one-sentence ``UserError`` naming the key. Presets ship inside the package
(``maspo/presets/<name>.yaml``) and load by name. This module imports no torch, so type
and range errors come back at once; only objective parameters and reward functions
import their (torch) modules.

To add a checked numeric key: declare the field below, then give it a line in ``BOUNDS``
(every float must also be finite; a test checks that each numeric key has bounds).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from maspo.devices import check_device_name
from maspo.errors import UserError

PRECISIONS = ("fp32", "bf16", "auto")  # train.precision values (see maspo.precision)
AT_MAX_DRAWS = ("train", "stop")  # rollout.at_max_draws values
REPORT_TO = ("tensorboard", "trackio", "wandb", "mlflow", "none")  # train.report_to items
EVAL_MAX_NEW_TOKENS = 512  # `maspo eval` completion cap for a model that is not a run


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = False  # train LoRA adapters (peft) instead of all weights
    rank: int = 16  # adapter rank r
    alpha: int = 32  # adapter scaling alpha (effective scale alpha / r)
    dropout: float = 0.0  # adapter dropout (keep 0 for bit-exact resume)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class ModelConfig:
    path: str = "default"  # HF model dir, hub id org/name[@revision], or "default" (SmolLM2-135M)
    lora: LoraConfig = field(default_factory=LoraConfig)
    logprob_chunk: int | None = None  # tokens per lm_head chunk (None: maspo.logprobs' default)


@dataclass(frozen=True)
class DataConfig:
    task: str = "arithmetic"  # built-in task name; ignored when `path` is set
    task_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {digits: 2}
    path: str | None = None  # JSONL / Parquet / save_to_disk dir, or hub id org/name[:config=C]
    test_path: str | None = None  # held-out rows, file or hub id (else split off `path`)
    fields: dict[str, str] = field(default_factory=dict)  # e.g. {prompt: problem}
    answer_format: str = "auto"  # how a file's answer field reads: auto|plain|gsm8k|boxed
    answer_check: str | None = None  # files: strict (final \boxed{} only) | lenient; None: strict
    test_size: int = 50  # held-out prompts
    system_prompt: str | None = None  # None: the chat template's default
    chat_template: bool = True  # render prompts with the tokenizer's chat template


@dataclass(frozen=True)
class RolloutConfig:
    prompts_per_step: int = 8  # P prompts per step
    group_size: int = 8  # G completions per prompt
    max_new_tokens: int = 16  # completion length cap (a cut completion earns no reward)
    temperature: float = 0.7  # sampling temperature (log-probs use the same)
    top_p: float = 1.0  # nucleus sampling
    filter_groups: bool = False  # dynamic sampling (DAPO): train only on untied groups
    max_draws: int = 8  # filter_groups: batches of P prompts drawn per step at most
    at_max_draws: str = "train"  # at the bound: "train" on the groups found, or "stop"


@dataclass(frozen=True)
class RewardConfig:
    functions: tuple[str, ...] = ()  # extra TRL-style reward fns: names or "pkg.mod:fn"
    format_weight: float = 0.0  # weight of the format reward added to the task reward
    score_truncated: bool = False  # False: a completion cut at max_new_tokens earns 0


@dataclass(frozen=True)
class LossConfig:
    name: str = "maspo"  # objective (maspo.losses.names())
    params: dict[str, Any] = field(default_factory=dict)  # objective parameters
    aggregation: str | None = None  # None: the objective's recommended mode
    advantage: str = "grpo"  # group estimator: grpo | dr_grpo | rloo
    entropy_advantage: bool = False  # entropy-shaped advantages (arXiv 2506.14758)
    kl_coef: float = 0.0  # k3 KL penalty to the initial (reference) policy
    entropy_coef: float = 0.0  # entropy bonus


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-5  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW moment decay rates, each in [0, 1)
    grad_clip: float = 1.0  # max global gradient norm
    warmup_steps: int = 2  # linear LR warm-up, in optimizer updates
    updates_per_step: int = 2  # K mini-batches (optimizer updates) per rollout
    micro_batch_size: int = 16  # completions per forward/backward (gradient accumulation)
    max_bad_updates: int = 3  # consecutive non-finite updates before the run stops


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 8  # rollout steps
    seed: int = 0  # seeds prompts, sampling and updates (0 <= seed < 2**32)
    eval_every: int = 4  # held-out evaluation period in steps (0: only before and after)
    eval_samples: int = 4  # completions per held-out prompt (accuracy = mean over them)
    eval_temperature: float = 0.7  # held-out sampling temperature (> 0)
    save_every: int = 4  # checkpoint period in steps (the final step is always saved)
    keep_checkpoints: int = 1  # newest checkpoints kept (each ~3x the fp32 weights)
    samples_per_step: int = 8  # completions saved per step in the run folder (0: none)
    output_dir: str | None = None  # None: runs/<objective>-<timestamp>
    threads: int = 0  # torch CPU threads (0: torch's default)
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 weights/optimizer) | auto: bf16 if native
    report_to: tuple[str, ...] = ("tensorboard",)  # tensorboard, trackio, wandb, mlflow or [none]


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------
# Building a config from nested dicts (YAML, overrides), with type checks by key.


def _check_type(key: str, value: Any, annotation: Any) -> Any:
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
                return _check_type(key, value, arg)
            except UserError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(key, v, args[0]) for v in value)
        if len(value) != len(args):
            raise UserError(f"config key {key!r} must have {len(args)} items, got {value!r}")
        return tuple(_check_type(key, v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r} must be a mapping, got {value!r}")
        return {str(k): _check_type(f"{key}.{k}", v, args[1]) for k, v in value.items()}
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


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
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
            kwargs[key] = _build(annotation, value, f"{full}.")
        else:
            kwargs[key] = _check_type(full, value, annotation)
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


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in (
                "params", "task_settings", "fields"):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


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


def _merge_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overrides merge into mappings key by key (``loss.params.alpha=0.5`` keeps others)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_override(merged[key], value)
        else:
            merged[key] = value
    return merged


PRESET_SUFFIX = ".yaml"


def preset_names() -> list[str]:
    """Names of the presets shipped in ``maspo/presets/`` (``--config <name>``)."""
    folder = resources.files("maspo") / "presets"
    return sorted(p.name.removesuffix(PRESET_SUFFIX) for p in folder.iterdir()
                  if p.name.endswith(PRESET_SUFFIX))


def _preset_text(spec: str | Path) -> tuple[str, str]:
    """(text, description) of ``--config`` value ``spec``: a preset name or a YAML path.

    A bare word (no folder, no .yaml/.yml) is a preset name; a bare word that is also a
    file in the current folder is refused rather than guessed.
    """
    text = str(spec)
    path = Path(text).expanduser()
    is_name = re.fullmatch(r"[A-Za-z0-9_.-]+", text) is not None and path.suffix not in (
        ".yaml", ".yml")
    if is_name:
        if path.is_file():  # (a folder of that name cannot be a config: no clash)
            raise UserError(f"--config {text!r} is both a preset name and a file here; "
                            f"write ./{text} for the file")
        if text not in preset_names():
            raise UserError(f"--config {text!r} is neither a preset ({', '.join(preset_names())})"
                            " nor a .yaml file")
        return (resources.files("maspo") / "presets" / f"{text}{PRESET_SUFFIX}").read_text(), \
            f"preset {text!r}"
    if not path.is_file():
        raise UserError(f"config file {text!r} does not exist")
    try:
        return path.read_text(), f"config file {text!r}"
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"config file {text!r} cannot be read ({type(err).__name__})") from None


def _read_yaml(text: str, what: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{what} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{what} must hold a mapping of sections")
    return loaded


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults <- preset (a name or a YAML path) <- overrides, validated (see ``validate``)."""
    data = to_dict(Config())
    if path is not None:
        data = _merge(data, _read_yaml(*_preset_text(path)))
    for text in overrides:
        data = _merge_override(data, parse_override(text))
    config = _build(Config, data)
    validate(config)
    return config


# ---------------------------------------------------------------------------------------
# A saved config (a run's) read back, and overrides applied to a built config.


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config (e.g. a run's) completed with today's defaults."""
    return _merge(to_dict(Config()), data)


def config_from_saved(text: str, what: str) -> Config:
    """The Config of saved YAML ``text`` (``what`` names it in errors), completed with
    today's defaults; not validated (see ``validate``)."""
    saved = with_defaults(_read_yaml(text, what))
    try:
        return _build(Config, saved)
    except UserError as err:
        raise UserError(f"{what} is no longer valid: {err}") from None


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """``config`` with ``section.key=value`` overrides applied; not validated."""
    data = to_dict(config)
    for text in overrides:
        data = _merge_override(data, parse_override(text))
    return _build(Config, data)


def override_value(overrides: list[str], key: str) -> Any:
    """The value the overrides give ``section.key`` (the last one wins), else None."""
    value = None
    for text in overrides:
        node: Any = parse_override(text)
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            value = node
    return value


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; mappings are flattened down to their leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(old: Config | dict[str, Any], new: Config | dict[str, Any]
                   ) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of every key whose value differs, keys in order."""
    a = flatten(old if isinstance(old, dict) else to_dict(old))
    b = flatten(new if isinstance(new, dict) else to_dict(new))
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


# ---------------------------------------------------------------------------------------
# Validation of meaning: ranges by key, then what needs the objective / task / reward code.


@dataclass(frozen=True)
class Bounds:
    """Allowed values of a numeric key (each item of a tuple-valued key)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``low`` itself is not allowed
    high_open: bool = False  # ``high`` itself is not allowed
    why: str = ""  # the reason, appended to the message

    def check(self, key: str, value: float) -> None:
        too_low = self.low is not None and (value < self.low or
                                            (self.low_open and value == self.low))
        too_high = self.high is not None and (value > self.high or
                                              (self.high_open and value == self.high))
        if too_low or too_high:
            raise UserError(f"config key {key!r} must be {self.describe()}, got {value!r}"
                            + (f": {self.why}" if self.why else ""))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
AT_LEAST_ONE = Bounds(1)
SEED_LIMIT = 2**32  # step seeds are seed * 7919 + step: below 2**32 they fit torch's 64 bits

BOUNDS: dict[str, Bounds] = {
    "model.lora.rank": AT_LEAST_ONE,
    "model.lora.alpha": POSITIVE,
    "model.lora.dropout": Bounds(0, 1, high_open=True),
    "model.logprob_chunk": AT_LEAST_ONE,
    "data.test_size": NON_NEGATIVE,
    "rollout.prompts_per_step": AT_LEAST_ONE,
    "rollout.max_draws": AT_LEAST_ONE,
    "rollout.group_size": Bounds(2, why="group advantages need at least two completions "
                                 "per prompt"),
    "rollout.max_new_tokens": AT_LEAST_ONE,
    "rollout.temperature": POSITIVE,
    "rollout.top_p": Bounds(0, 1, low_open=True),
    "reward.format_weight": NON_NEGATIVE,
    "loss.kl_coef": NON_NEGATIVE,
    "loss.entropy_coef": NON_NEGATIVE,
    "optim.lr": POSITIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.betas": Bounds(0, 1, high_open=True, why="AdamW's moment decay rates"),
    "optim.grad_clip": Bounds(0, why="0 turns clipping off"),
    "optim.warmup_steps": NON_NEGATIVE,
    "optim.updates_per_step": AT_LEAST_ONE,
    "optim.micro_batch_size": AT_LEAST_ONE,
    "optim.max_bad_updates": AT_LEAST_ONE,
    "train.steps": AT_LEAST_ONE,
    "train.seed": Bounds(0, SEED_LIMIT, high_open=True),
    "train.eval_every": Bounds(0, why="0 evaluates only before and after training"),
    "train.eval_samples": AT_LEAST_ONE,
    "train.eval_temperature": POSITIVE,
    "train.samples_per_step": NON_NEGATIVE,
    "train.save_every": Bounds(0, why="0 saves only the final step"),
    "train.keep_checkpoints": AT_LEAST_ONE,
    "train.threads": Bounds(0, why="0 keeps torch's default"),
}
"""Range of every numeric key (floats must also be finite, see ``_check_type``)."""


def check_bounds(config: Config) -> None:
    """UserError for the first numeric key outside its ``BOUNDS``."""
    flat = flatten(to_dict(config))
    for key, bounds in BOUNDS.items():
        value = flat.get(key)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                bounds.check(key, item)


def validate(config: Config) -> None:
    """Every check that needs no model: ranges, objective parameters, task settings."""
    check_bounds(config)  # first: needs no imports
    r, o, t, loss = config.rollout, config.optim, config.train, config.loss
    check_device_name(t.device, "config key 'train.device'")
    if r.top_p < 1:
        raise UserError(f"config key 'rollout.top_p' is {r.top_p!r}, but training needs 1: "
                        "log-probs score the full softmax(logits / T), so a nucleus sample "
                        "would not come from the policy being scored")
    if t.precision not in PRECISIONS:
        raise UserError(f"config key 'train.precision' must be one of {', '.join(PRECISIONS)}, "
                        f"got {t.precision!r}")
    for item in t.report_to:
        if item not in REPORT_TO or t.report_to.count(item) > 1 or (
                item == "none" and len(t.report_to) > 1):
            raise UserError(f"config key 'train.report_to' lists {item!r}: each item one of "
                            f"{', '.join(REPORT_TO)}, named once ([none] alone)")
    if r.at_max_draws not in AT_MAX_DRAWS:
        raise UserError(f"config key 'rollout.at_max_draws' must be one of "
                        f"{', '.join(AT_MAX_DRAWS)}, got {r.at_max_draws!r}")
    if o.updates_per_step > r.prompts_per_step:
        raise UserError(f"config key 'optim.updates_per_step' ({o.updates_per_step}) exceeds "
                        f"rollout.prompts_per_step ({r.prompts_per_step}): each mini-batch "
                        "holds whole prompt groups")
    data = config.data
    from maspo.data.hub_datasets import parse_dataset_id

    for key, value in (("data.path", data.path), ("data.test_path", data.test_path)):
        # a hub data set id is fetched later, before the model loads (maspo.data.hub_datasets)
        if value is not None and not Path(value).exists() and parse_dataset_id(value) is None:
            raise UserError(f"config key {key!r}: {value!r} does not exist")

    from maspo.advantages import ESTIMATORS
    from maspo.data import get_task
    from maspo.data.files import check_answer_settings
    from maspo.losses import MODES, make_params, names
    from maspo.rewards import load_reward_fn

    if loss.name not in names():
        raise UserError(f"config key 'loss.name': unknown objective {loss.name!r}; "
                        f"known: {', '.join(names())}")
    try:
        make_params(loss.name, loss.params)
    except ValueError as err:
        raise UserError(f"config key 'loss.params': {err}") from None
    if loss.aggregation is not None and loss.aggregation not in MODES:
        raise UserError(f"config key 'loss.aggregation': unknown mode {loss.aggregation!r}; "
                        f"known: {', '.join(MODES)}")
    if loss.advantage not in ESTIMATORS:
        raise UserError(f"config key 'loss.advantage': unknown estimator {loss.advantage!r}; "
                        f"known: {', '.join(ESTIMATORS)}")
    for spec in config.reward.functions:
        load_reward_fn(spec)
    check_answer_settings(data.answer_format, data.answer_check)
    if data.path is None and (data.answer_format != "auto" or data.answer_check is not None):
        raise UserError("config keys 'data.answer_format' and 'data.answer_check' apply to "
                        "data.path files; the built-in tasks use their own answer check")
    if data.path is None:
        get_task(data.task, **data.task_settings)


# ---------------------------------------------------------------------------------------
# Showing a config: resolved values (`maspo config`) and every key (`maspo train --help`).


def resolved(config: Config) -> dict[str, Any]:
    """``to_dict`` with what the run really uses filled in: every objective parameter
    (defaults included) and the objective's aggregation mode when none is set."""
    from maspo.losses import get_spec, make_params

    data = to_dict(config)
    data["loss"]["params"] = to_dict(make_params(config.loss.name, config.loss.params))
    if config.loss.aggregation is None:
        data["loss"]["aggregation"] = get_spec(config.loss.name).aggregation
    return data


@functools.cache
def _field_docs() -> dict[tuple[str, str], str]:
    """(class, field) -> the field's trailing ``# comment`` in this file (its one-line doc)."""
    try:
        lines = Path(__file__).read_text().splitlines()
    except OSError:  # no source shipped: keys without docs
        return {}
    docs, current = {}, ""
    for line in lines:
        if match := re.match(r"class (\w+)", line):
            current = match.group(1)
        elif match := re.match(r"\s+(\w+): [^#]*#\s*(.+)$", line):
            docs[(current, match.group(1))] = match.group(2)
    return docs


def describe_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """One ``section.key = default  doc`` line per config key, for ``--help``."""
    lines = []
    docs = _field_docs()
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            lines += describe_keys(type(value), f"{prefix}{f.name}.")
            continue
        plain = list(value) if isinstance(value, tuple) else value
        shown = yaml.safe_dump(plain, default_flow_style=True).strip()
        shown = shown.removesuffix("...").strip()  # YAML's end marker after a scalar
        doc = docs.get((cls.__name__, f.name), "")
        lines.append(f"  {prefix}{f.name}={shown}" + (f"  ({doc})" if doc else ""))
    return lines
