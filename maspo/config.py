"""The run configuration: its schema (typed frozen dataclasses), the one table of what each
key means and allows (``KEYS``), the presets, and validation.

A run's config is built once at start-up from (defaults <- YAML preset <- command-line
overrides such as ``loss.name=grpo rollout.group_size=8``) and validated completely,
objective parameters, task settings and LoRA rules included, before any model is
resolved. Every problem is a one-sentence ``UserError`` naming the key. Presets ship
inside the package (``maspo/presets/<name>.yaml``) and load by name. Building from dicts
is ``maspo.config_build``; reading ``key=value`` text is ``maspo.spec_text``. This module
imports no torch, so type and range errors come back at once; only objective
parameters and reward functions import their (torch) modules.

To add a key: declare the field below, then give it a line in ``KEYS`` (its doc, and
its range or choices: validation and ``maspo train --help`` both read them; a test
checks that each key has a line and each numeric key a range).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from maspo.config_build import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Bounds,
    Key,
    build,
    flatten,
    merge,
    to_dict,
)
from maspo.data.files import ANSWER_CHECKS, ANSWER_FORMATS
from maspo.devices import check_device_name
from maspo.errors import UserError
from maspo.spec_text import apply_override_texts

PRECISIONS = ("fp32", "bf16", "auto")  # train.precision values (see maspo.precision)
AT_MAX_DRAWS = ("train", "stop")  # rollout.at_max_draws values
REPORT_TO = ("tensorboard", "trackio", "wandb", "mlflow", "none")  # train.report_to items
EVAL_MAX_NEW_TOKENS = 512  # `maspo eval` completion cap for a model that is not a run
EVAL_BATCH_ROWS = 128  # completions per generate call of an evaluation, by default at least
CALL_POSITIONS = 2**15  # ... and more while rows x (longest prompt + length cap) fit here;
# dynamic sampling samples draws ahead in one call within the same bound
EVAL_MAX_ROWS = 512  # ... up to this many
SEED_LIMIT = 2**32  # step seeds are seed * 7919 + step: below 2**32 they fit torch's 64 bits


# The schema; each key's meaning and allowed values are in ``KEYS`` below.
@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = False
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class ModelConfig:
    path: str = "default"
    lora: LoraConfig = field(default_factory=LoraConfig)
    logprob_chunk: int | None = None


@dataclass(frozen=True)
class DataConfig:
    task: str = "arithmetic"
    task_settings: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    test_path: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    answer_format: str = "auto"
    answer_check: str | None = None
    test_size: int = 50
    system_prompt: str | None = None
    chat_template: bool = True


@dataclass(frozen=True)
class RolloutConfig:
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 16
    temperature: float = 0.7
    top_p: float = 1.0
    filter_groups: bool = False
    max_draws: int = 8
    at_max_draws: str = "train"


@dataclass(frozen=True)
class RewardConfig:
    functions: tuple[str, ...] = ()
    format_weight: float = 0.0
    score_truncated: bool = False


@dataclass(frozen=True)
class LossConfig:
    name: str = "maspo"
    params: dict[str, Any] = field(default_factory=dict)
    aggregation: str | None = None
    advantage: str = "grpo"
    entropy_advantage: bool = False
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    entropy_target: float | None = None
    entropy_coef_delta: float = 0.005
    entropy_coef_min: float = 0.0
    entropy_coef_max: float = 1.0


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    warmup_steps: int = 2
    updates_per_step: int = 2
    micro_batch_size: int = 16
    max_bad_updates: int = 3
    fused: bool = True


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 8
    seed: int = 0
    eval_every: int = 4
    eval_samples: int = 4
    eval_temperature: float = 0.7
    save_every: int = 4
    keep_checkpoints: int = 1
    samples_per_step: int = 8
    output_dir: str | None = None
    threads: int = 0
    device: str = "auto"
    precision: str = "fp32"
    report_to: tuple[str, ...] = ("tensorboard",)


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
# What each key means and allows: the one table validation and `--help` read.


def _registry(module: str, name: str) -> Callable[[], list[str]]:
    """The names a registry holds, read when a value is checked (its module needs torch)."""
    def known() -> list[str]:
        value = getattr(importlib.import_module(module), name)
        return list(value() if callable(value) else value)
    return known


KEYS: dict[str, Key] = {
    "model.path": Key("HF model dir, hub id org/name[@revision], or \"default\" (SmolLM2-135M)"),
    "model.lora.enabled": Key("train LoRA adapters (peft) instead of all weights"),
    "model.lora.rank": Key("adapter rank r", AT_LEAST_ONE),
    "model.lora.alpha": Key("adapter scaling alpha (effective scale alpha / r)", POSITIVE),
    "model.lora.dropout": Key("adapter dropout", Bounds(0, 0, why=(
        "maspo computes every policy log-prob with dropout off, so that pi_old is exactly "
        "the sampled policy"))),
    "model.lora.target_modules": Key("names of the linear layers that get adapters"),
    "model.logprob_chunk": Key("tokens per lm_head chunk (null: maspo.logprobs' default)",
                               AT_LEAST_ONE),
    "data.task": Key("built-in task name; ignored when data.path is set"),
    "data.task_settings": Key("the task's settings, e.g. {digits: 2}"),
    "data.path": Key("JSONL / Parquet / save_to_disk dir, or hub id org/name[:config=C]"),
    "data.test_path": Key("held-out rows, file or hub id (else split off data.path)"),
    "data.fields": Key("field names of a file, e.g. {prompt: problem}"),
    "data.answer_format": Key("how a file's answer field reads", choices=ANSWER_FORMATS),
    "data.answer_check": Key("files: strict counts the final \\boxed{} only; null: strict",
                             choices=tuple(ANSWER_CHECKS)),
    "data.test_size": Key("held-out prompts", NON_NEGATIVE),
    "data.system_prompt": Key("system message (null: the chat template's default)"),
    "data.chat_template": Key("render prompts with the tokenizer's chat template"),
    "rollout.prompts_per_step": Key("P prompts per step", AT_LEAST_ONE),
    "rollout.group_size": Key("G completions per prompt", Bounds(
        2, why="group advantages need at least two completions per prompt")),
    "rollout.max_new_tokens": Key("completion length cap (a cut completion earns no reward)",
                                  AT_LEAST_ONE),
    "rollout.temperature": Key("sampling temperature (log-probs use the same)", POSITIVE),
    "rollout.top_p": Key("nucleus sampling (training needs 1)", Bounds(0, 1, low_open=True)),
    "rollout.filter_groups": Key("dynamic sampling (DAPO): train only on untied groups"),
    "rollout.max_draws": Key("filter_groups: batches of P prompts drawn per step at most",
                             AT_LEAST_ONE),
    "rollout.at_max_draws": Key("at the bound: train on the groups found, or stop",
                                choices=AT_MAX_DRAWS),
    "reward.functions": Key("extra TRL-style reward fns: names or \"pkg.mod:fn\""),
    "reward.format_weight": Key("weight of the format reward added to the task reward",
                                NON_NEGATIVE),
    "reward.score_truncated": Key("false: a completion cut at max_new_tokens earns 0"),
    "loss.name": Key("objective (`maspo objectives` lists them)",
                     choices=_registry("maspo.losses", "names")),
    "loss.params": Key("objective parameters (`maspo config` shows them all)"),
    "loss.aggregation": Key("per-token loss reduction (null: the objective's own)",
                            choices=_registry("maspo.losses", "MODES")),
    "loss.advantage": Key("group estimator", choices=_registry("maspo.advantages", "ESTIMATORS")),
    "loss.entropy_advantage": Key("entropy-shaped advantages (arXiv 2506.14758)"),
    "loss.kl_coef": Key("k3 KL penalty to the initial (reference) policy", NON_NEGATIVE),
    "loss.entropy_coef": Key("entropy bonus (with entropy_target: its starting value)",
                             NON_NEGATIVE),
    "loss.entropy_target": Key("adaptive entropy bonus: target token entropy in nats "
                               "(null: off; maspo.entropy_control)", NON_NEGATIVE),
    "loss.entropy_coef_delta": Key("adaptive: the coefficient's step per optimizer update",
                                   POSITIVE),
    "loss.entropy_coef_min": Key("adaptive: the coefficient's lower bound", NON_NEGATIVE),
    "loss.entropy_coef_max": Key("adaptive: the coefficient's upper bound", NON_NEGATIVE),
    "optim.lr": Key("AdamW learning rate", POSITIVE),
    "optim.weight_decay": Key("AdamW decoupled weight decay", NON_NEGATIVE),
    "optim.betas": Key("AdamW moment decay rates", Bounds(0, 1, high_open=True,
                                                          why="AdamW's moment decay rates")),
    "optim.grad_clip": Key("max global gradient norm", Bounds(0, why="0 turns clipping off")),
    "optim.warmup_steps": Key("linear LR warm-up, in optimizer updates", NON_NEGATIVE),
    "optim.updates_per_step": Key("K mini-batches (optimizer updates) per rollout",
                                  AT_LEAST_ONE),
    "optim.micro_batch_size": Key("completions per forward/backward (gradient accumulation)",
                                  AT_LEAST_ONE),
    "optim.fused": Key("fused AdamW kernel where torch has one (CPU, CUDA); false: the loop"),
    "optim.max_bad_updates": Key("consecutive non-finite updates before the run stops",
                                 AT_LEAST_ONE),
    "train.steps": Key("rollout steps", AT_LEAST_ONE),
    "train.seed": Key("seeds prompts, sampling and updates", Bounds(0, SEED_LIMIT,
                                                                      high_open=True)),
    "train.eval_every": Key("held-out evaluation period in steps", Bounds(
        0, why="0 evaluates only before and after training")),
    "train.eval_samples": Key("completions per held-out prompt (accuracy = mean over them)",
                              AT_LEAST_ONE),
    "train.eval_temperature": Key("held-out sampling temperature", POSITIVE),
    "train.save_every": Key("checkpoint period in steps (the final step is always saved)",
                            Bounds(0, why="0 saves only the final step")),
    "train.keep_checkpoints": Key("newest checkpoints kept (each ~3x the fp32 weights)",
                                  AT_LEAST_ONE),
    "train.samples_per_step": Key("completions saved per step in the run folder",
                                  NON_NEGATIVE),
    "train.output_dir": Key("run folder (null: runs/<objective>-<timestamp>)"),
    "train.threads": Key("torch CPU threads", Bounds(0, why="0 keeps torch's default")),
    "train.device": Key("auto (cuda if available, else cpu), cpu, cuda, cuda:1, ..."),
    "train.report_to": Key("where the metrics also go: " + ", ".join(REPORT_TO)
                           + " (alone), each named once"),
    "train.precision": Key("bf16: autocast, fp32 weights/optimizer; auto: bf16 if native",
                           choices=PRECISIONS),
}
"""Every key of ``Config``: its one-line doc, and its range or choices (floats must also
be finite, see ``maspo.config_build``)."""

SETTINGS: dict[str, Key] = {
    "sampling.max_new_tokens": Key("completion length cap", AT_LEAST_ONE),
    "sampling.temperature": Key("sampling temperature (unused when greedy)", POSITIVE),
    "sampling.top_p": Key("nucleus sampling", Bounds(0, 1, low_open=True)),
    "eval.n": Key("completions per problem", AT_LEAST_ONE),
    "eval.prompts_per_batch": Key("prompts per generate call", AT_LEAST_ONE),
    "eval.limit": Key("the first problems of each data set", AT_LEAST_ONE),
    "eval.test_size": Key("problems drawn from a built-in task", AT_LEAST_ONE),
    "eval.data_seed": Key("seed of a built-in task's held-out set", NON_NEGATIVE),
    "compare.jobs": Key("runs trained at a time", AT_LEAST_ONE),
    "compare.target": Key("held-out accuracy whose first step is reported", Bounds(0, 1)),
    "compare.equivalence": Key("equivalence margin of the paired verdicts",
                               Bounds(0, 1, low_open=True, high_open=True)),
    "probe.entropy_steps": Key("steps of the entropy probe", NON_NEGATIVE),
}
"""The ranges of the settings that are not a run's config: sampling, evaluation, and the
comparison and probe commands (``check_setting``)."""


def check_setting(key: str, value: Any) -> None:
    """FieldError naming ``key`` (of ``SETTINGS``) unless ``value`` is in its range."""
    SETTINGS[key].check(key, value, "setting")


BOUNDS = {key: spec.bounds for key, spec in KEYS.items() if spec.bounds is not None}
"""The numeric keys' ranges (a view of ``KEYS``)."""


def check_keys(config: Config) -> None:
    """UserError for the first key outside its range or choices (``KEYS``)."""
    flat = flatten(to_dict(config))
    for key, spec in KEYS.items():
        spec.check(key, flat.get(key))


# ---------------------------------------------------------------------------------------
# Presets, saved configs, overrides.


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
        data = merge(data, _read_yaml(*_preset_text(path)))
    config = build(Config, apply_override_texts(data, overrides))
    validate(config)
    return config


# ---------------------------------------------------------------------------------------
# A saved config (a run's) read back, and overrides applied to a built config.


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config (e.g. a run's) completed with today's defaults."""
    return merge(to_dict(Config()), data)


def config_from_saved(text: str, what: str) -> Config:
    """The Config of saved YAML ``text`` (``what`` names it in errors), completed with
    today's defaults; not validated (see ``validate``)."""
    saved = with_defaults(_read_yaml(text, what))
    try:
        return build(Config, saved)
    except UserError as err:
        raise UserError(f"{what} is no longer valid: {err}") from None


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """``config`` with ``section.key=value`` overrides applied; not validated."""
    return build(Config, apply_override_texts(to_dict(config), overrides))


# ---------------------------------------------------------------------------------------
# Validation of meaning: ranges and choices by key, then what needs the objective / task /
# reward code.


def validate(config: Config) -> None:
    """Every check that needs no model: ranges and choices (``KEYS``), LoRA, objective
    parameters, reward functions, task settings."""
    check_keys(config)  # first: needs no imports (but the registries' names)
    r, o, t, loss, data = config.rollout, config.optim, config.train, config.loss, config.data
    check_device_name(t.device, "config key 'train.device'")
    if r.top_p < 1:
        raise UserError(f"config key 'rollout.top_p' is {r.top_p!r}, but training needs 1: "
                        "log-probs score the full softmax(logits / T), so a nucleus sample "
                        "would not come from the policy being scored")
    if not config.model.lora.target_modules:
        raise UserError("config key 'model.lora.target_modules' must name at least one module")
    for item in t.report_to:
        if item not in REPORT_TO or t.report_to.count(item) > 1 or (
                item == "none" and len(t.report_to) > 1):
            raise UserError(f"config key 'train.report_to' lists {item!r}: each item one of "
                            f"{', '.join(REPORT_TO)}, named once ([none] alone)")
    if o.updates_per_step > r.prompts_per_step:
        raise UserError(f"config key 'optim.updates_per_step' ({o.updates_per_step}) exceeds "
                        f"rollout.prompts_per_step ({r.prompts_per_step}): each mini-batch "
                        "holds whole prompt groups")
    if loss.entropy_coef_min > loss.entropy_coef_max:
        raise UserError(f"config key 'loss.entropy_coef_min' ({loss.entropy_coef_min}) exceeds "
                        f"loss.entropy_coef_max ({loss.entropy_coef_max})")
    from maspo.data.hub_datasets import parse_dataset_id

    for key, value in (("data.path", data.path), ("data.test_path", data.test_path)):
        # a hub data set id is fetched later, before the model loads (maspo.data.hub_datasets)
        if value is not None and not Path(value).exists() and parse_dataset_id(value) is None:
            raise UserError(f"config key {key!r}: {value!r} does not exist")

    from maspo.data import get_task
    from maspo.losses import make_params
    from maspo.rewards import load_reward_fn

    try:
        make_params(loss.name, loss.params)
    except ValueError as err:
        raise UserError(f"config key 'loss.params': {err}") from None
    for spec in config.reward.functions:
        load_reward_fn(spec)
    if data.path is None and (data.answer_format != "auto" or data.answer_check is not None):
        raise UserError("config keys 'data.answer_format' and 'data.answer_check' apply to "
                        "data.path files; the built-in tasks use their own answer check")
    if data.path is None:
        get_task(data.task, **data.task_settings)


# ---------------------------------------------------------------------------------------
# Showing a config: the values a run really uses (`maspo config`); every key's line of
# `maspo train --help` is drawn from ``KEYS`` by ``maspo.cli_parser``.


def resolved(config: Config) -> dict[str, Any]:
    """``to_dict`` with what the run really uses filled in: every objective parameter
    (defaults included) and the objective's aggregation mode when none is set."""
    from maspo.losses import get_spec, make_params

    data = to_dict(config)
    data["loss"]["params"] = to_dict(make_params(config.loss.name, config.loss.params))
    if config.loss.aggregation is None:
        data["loss"]["aggregation"] = get_spec(config.loss.name).aggregation
    return data
