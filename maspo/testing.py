"""Tiny real models for tests and examples: a character-level tokenizer with a chat
template and a small Llama built from a config, saved as a normal HF model directory, and
a way to place such a folder in a Hugging Face hub cache as if it had been downloaded.

Nothing is downloaded; a tiny model trains in seconds on CPU.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from maspo.losses.core import LossOutput

SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII, with ChatML-style special tokens."""
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                  eos_token="<|im_end|>", unk_token="<unk>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, hidden: int = 32,
               layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def save_tiny_model(path: str | Path, seed: int = 0, **kwargs) -> Path:
    """Build the tiny model + tokenizer and save them as an HF directory at ``path``."""
    path = Path(path)
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=seed, **kwargs)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def place_in_hub_cache(cache: str | Path, repo_id: str, folder: str | Path,
                       kind: str = "model", branch: str | None = "main") -> str:
    """Lay out every file under ``folder`` as revision ``branch`` of hub repository
    ``repo_id`` (``kind`` "model" or "dataset") in the hub cache ``cache``, the way
    huggingface_hub stores a download: ``<kind>s--org--name/`` with the contents in
    ``blobs/``, ``snapshots/<commit>/`` linking to them and ``refs/<branch>`` naming the
    commit. Returns the commit (derived from the contents: the same files, the same
    commit). ``branch=None`` adds the snapshot without pointing a ref at it."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha1(repo_id.encode())
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + file.read_bytes())
    commit = digest.hexdigest()
    repo = Path(cache) / f"{kind}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for file in files:
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(file.read_bytes())
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if branch is not None:
        (repo / "refs" / branch).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return commit


GPT2_DROPOUT = 0.1  # GPT-2's own default for resid / embd / attn dropout


def save_dropout_model(path: str | Path, dropout: float = GPT2_DROPOUT) -> Path:
    """A tiny GPT-2-style model whose config has ``dropout`` everywhere, saved at ``path``."""
    path = Path(path)
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def digit_reward(completions: list, **columns) -> list[float]:
    """Fraction of a completion's characters that are digits: a dense, graded reward that
    gives even a random tiny model non-zero advantages (TRL's reward contract)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]


TINY_RUN_SETTINGS = {  # 2 steps, 2 prompts x 4 samples, 6 held-out prompts: seconds on CPU
    "train.steps": 2, "train.eval_samples": 2, "train.eval_every": 0, "train.save_every": 1,
    "train.threads": 1, "data.test_size": 6, "rollout.prompts_per_step": 2,
    "rollout.group_size": 4, "rollout.max_new_tokens": 6,
    "reward.functions": "[maspo.testing:digit_reward]", "optim.lr": 0.01,
    "optim.micro_batch_size": 3, "optim.warmup_steps": 0,
    "train.keep_checkpoints": 2,  # tests evaluate and resume from the earlier checkpoint too
    "reward.score_truncated": True,  # a random tiny model rarely ends: grade cut text too
}


def tiny_overrides(model_dir: str | Path, out: str | Path | None = None,
                   **extra: object) -> list[str]:
    """`section.key=value` overrides for a fast run of the tiny model (a graded reward and a
    learning rate high enough that the weights visibly move)."""
    values: dict[str, object] = {**TINY_RUN_SETTINGS, "model.path": model_dir}
    if out is not None:
        values["train.output_dir"] = out
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@dataclass(frozen=True)
class NoParams:
    """Parameters of an objective that has none."""


def nan_objective(logp, old_logp, adv, mask, params) -> LossOutput:
    """An objective whose loss is always NaN: every update is non-finite (to exercise the
    trainer's guard). Register it under a name with ``register(name, NoParams)``."""
    return LossOutput(per_token=logp * float("nan"), metrics={}, weight=torch.zeros_like(logp))


def rare_reward(completions: list, **columns) -> list[float]:
    """1 when a completion holds the character "7", else 0: a random tiny model rarely
    writes it, so most groups of completions are tied (all 0) and carry no signal."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float("7" in t) for t in texts]


def constant_reward(completions: list, **columns) -> list[float]:
    """0.5 for every completion: every group is tied."""
    return [0.5] * len(completions)
