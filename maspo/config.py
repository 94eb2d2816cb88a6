"""Typed run configuration: frozen dataclasses, YAML presets, `key=value` overrides.

A run's config is built once at start-up from (defaults <- YAML preset <- command-line
overrides such as ``loss.name=grpo rollout.group_size=8``) and validated completely,
objective parameters and task settings included, before any model is loaded. Every
problem is a one-sentence ``UserError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maspo.errors import UserError

PRECISIONS = ("fp32", "bf16")  # train.precision values


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = False  # train LoRA adapters (peft) instead of all weights
    rank: int = 16  # adapter rank r
    alpha: int = 32  # adapter scaling alpha (effective scale alpha / r)
    dropout: float = 0.0  # adapter dropout (keep 0 for bit-exact resume)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class ModelConfig:
    path: str = "default"  # HF model directory, or "default" (embedded SmolLM2-135M-Instruct)
    lora: LoraConfig = field(default_factory=LoraConfig)
    logprob_chunk: int | None = None  # tokens per lm_head chunk (None: maspo.logprobs' default)


@dataclass(frozen=True)
class DataConfig:
    task: str = "arithmetic"  # built-in task name; ignored when `path` is set
    task_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {digits: 2}
    path: str | None = None  # JSONL / Parquet / HF datasets dir with prompt + answer rows
    test_path: str | None = None  # held-out rows for a file dataset (else split off `path`)
    fields: dict[str, str] = field(default_factory=dict)  # e.g. {prompt: problem}
    test_size: int = 50  # held-out prompts
    system_prompt: str | None = None  # None: the chat template's default
    chat_template: bool = True  # render prompts with the tokenizer's chat template


@dataclass(frozen=True)
class RolloutConfig:
    prompts_per_step: int = 8  # P prompts per step
    group_size: int = 8  # G completions per prompt
    max_new_tokens: int = 8  # completion length cap
    temperature: float = 1.0  # sampling temperature (log-probs use the same)
    top_p: float = 1.0  # nucleus sampling


@dataclass(frozen=True)
class RewardConfig:
    functions: tuple[str, ...] = ()  # extra TRL-style reward fns: names or "pkg.mod:fn"
    format_weight: float = 0.0  # weight of the format reward added to the task reward


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
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global gradient norm
    warmup_steps: int = 2  # linear LR warm-up, in optimizer updates
    updates_per_step: int = 2  # K mini-batches (optimizer updates) per rollout
    micro_batch_size: int = 16  # completions per forward/backward (gradient accumulation)
    max_bad_updates: int = 3  # consecutive non-finite updates before the run stops


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 12  # rollout steps
    seed: int = 0
    eval_every: int = 4  # held-out evaluation period in steps (0: only before and after)
    eval_samples: int = 4  # completions per held-out prompt (accuracy = mean over them)
    eval_temperature: float = 1.0
    save_every: int = 4  # checkpoint period in steps (the final step is always saved)
    keep_checkpoints: int = 2
    output_dir: str | None = None  # None: runs/<objective>-<timestamp>
    threads: int = 0  # torch CPU threads (0: torch's default)
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # "bf16": autocast matmuls to bf16 (weights, optimizer, loss fp32)


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
    if annotation is Any:
        return value
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise UserError(f"config key {key!r} must be a number, got {value!r}")
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


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
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


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults <- YAML file <- overrides, validated (see ``validate``)."""
    data = to_dict(Config())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"config file {str(path)!r} is not valid YAML: "
                            f"{str(err).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {str(path)!r} must hold a mapping of sections")
        data = _merge(data, loaded)
    for text in overrides:
        data = _merge_override(data, parse_override(text))
    config = _build(Config, data)
    validate(config)
    return config


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"config key {key!r} must be {'>= 0' if allow_zero else '> 0'}, "
                        f"got {value!r}")


def validate(config: Config) -> None:
    """Every check that needs no model: ranges, objective parameters, task settings."""
    from maspo.advantages import ESTIMATORS
    from maspo.data import get_task
    from maspo.losses import MODES, make_params, names
    from maspo.rewards import load_reward_fn

    r, o, t, loss = config.rollout, config.optim, config.train, config.loss
    for key, value in (("rollout.prompts_per_step", r.prompts_per_step),
                       ("rollout.group_size", r.group_size),
                       ("rollout.max_new_tokens", r.max_new_tokens),
                       ("optim.updates_per_step", o.updates_per_step),
                       ("optim.micro_batch_size", o.micro_batch_size),
                       ("optim.max_bad_updates", o.max_bad_updates),
                       ("train.steps", t.steps), ("train.eval_samples", t.eval_samples),
                       ("train.keep_checkpoints", t.keep_checkpoints),
                       ("rollout.temperature", r.temperature), ("optim.lr", o.lr)):
        _positive(key, value)
    for key, value in (("optim.weight_decay", o.weight_decay), ("optim.grad_clip", o.grad_clip),
                       ("optim.warmup_steps", o.warmup_steps), ("loss.kl_coef", loss.kl_coef),
                       ("loss.entropy_coef", loss.entropy_coef),
                       ("train.eval_every", t.eval_every), ("train.save_every", t.save_every),
                       ("train.threads", t.threads), ("data.test_size", config.data.test_size),
                       ("train.eval_temperature", t.eval_temperature),
                       ("reward.format_weight", config.reward.format_weight)):
        _positive(key, value, allow_zero=True)
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise UserError(f"config key 'train.device' must be auto, cpu or cuda[:N], "
                        f"got {t.device!r}")
    if config.model.logprob_chunk is not None:
        _positive("model.logprob_chunk", config.model.logprob_chunk)
    if not 0 < r.top_p <= 1:
        raise UserError(f"config key 'rollout.top_p' must be in (0, 1], got {r.top_p!r}")
    if r.top_p < 1:
        raise UserError(f"config key 'rollout.top_p' is {r.top_p!r}, but training needs 1: "
                        "log-probs score the full softmax(logits / T), so a nucleus sample "
                        "would not come from the policy being scored")
    if t.precision not in PRECISIONS:
        raise UserError(f"config key 'train.precision' must be one of {', '.join(PRECISIONS)}, "
                        f"got {t.precision!r}")
    if r.group_size < 2:
        raise UserError("config key 'rollout.group_size' must be >= 2: group advantages "
                        "need at least two completions per prompt")
    if o.updates_per_step > r.prompts_per_step:
        raise UserError(f"config key 'optim.updates_per_step' ({o.updates_per_step}) exceeds "
                        f"rollout.prompts_per_step ({r.prompts_per_step}): each mini-batch "
                        "holds whole prompt groups")
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
    data = config.data
    if data.path is None:
        get_task(data.task, **data.task_settings)
    elif not Path(data.path).exists():
        raise UserError(f"config key 'data.path': {data.path!r} does not exist")
    if data.test_path is not None and not Path(data.test_path).exists():
        raise UserError(f"config key 'data.test_path': {data.test_path!r} does not exist")
