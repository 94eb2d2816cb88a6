"""Sampling completions with Hugging Face `generate` (works on CPU and GPU).

Sampling is from exactly the distribution the trainer scores, softmax(logits / T) with
nucleus top_p: the model's own generation defaults (top_k, repetition penalty, ...) are
overridden, so that at the first update the ratio is exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import GenerationConfig


@dataclass
class Rollout:
    """G completions for each of P prompts, rows grouped by prompt (B = P * G)."""

    input_ids: Tensor  # (B, S + T): prompt left-padded to S, completion right-padded to T
    attention_mask: Tensor  # (B, S + T): 0 on every pad
    completion_mask: Tensor  # (B, T) bool: completion tokens up to and including EOS
    prompt_len: int  # S, where completions start
    texts: list[str]  # decoded completions, special tokens removed
    truncated: Tensor  # (B,) bool: hit max_new_tokens without EOS
    group_size: int  # G: rows g * G .. (g + 1) * G - 1 share prompt g

    @property
    def completion_ids(self) -> Tensor:
        return self.input_ids[:, self.prompt_len:]  # (B, T)


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a completion: the generation config's EOS ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id if model.generation_config else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], n: int, *, max_new_tokens: int,
           temperature: float, top_p: float = 1.0, seed: int = 0,
           greedy: bool = False) -> Rollout:
    """``n`` completions per rendered prompt; deterministic for a given ``seed`` on CPU."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    device = next(model.parameters()).device
    prompt_ids = enc["input_ids"].repeat_interleave(n, dim=0).to(device)  # (B, S)
    prompt_mask = enc["attention_mask"].repeat_interleave(n, dim=0).to(device)
    stops = stop_token_ids(model, tokenizer)
    gen = GenerationConfig(
        do_sample=not greedy, temperature=temperature if not greedy else None,
        top_p=top_p if not greedy else None, top_k=0 if not greedy else None,
        max_new_tokens=max_new_tokens, eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id, repetition_penalty=None,
    )
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                         generation_config=gen)  # (B, S + T')
    model.train(was_training)
    s = prompt_ids.shape[1]
    completion = out[:, s:]  # (B, T')
    is_stop = torch.isin(completion, torch.tensor(stops, device=device))
    # tokens after the first stop token are padding; the stop token itself is kept
    after_stop = (is_stop.cumsum(-1) - is_stop.long()) > 0
    completion_mask = ~after_stop
    truncated = ~is_stop.any(-1)
    t = int(completion_mask.sum(-1).max().item()) if completion.shape[1] else 0
    completion, completion_mask = completion[:, :t], completion_mask[:, :t]
    completion = torch.where(completion_mask, completion, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(
        [row[m] for row, m in zip(completion, completion_mask, strict=True)],
        skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return Rollout(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask.long()], dim=1),
        completion_mask=completion_mask,
        prompt_len=s,
        texts=texts,
        truncated=truncated,
        group_size=n,
    )
