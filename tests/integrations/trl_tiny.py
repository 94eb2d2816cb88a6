"""The tiny model, tokenizer and reward the TRL tests train (no hub download): shared by
test_trl_trainer.py and the two-process script trl_two_process.py."""

from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 +=?."
LIKED = set("abcdefghijklm")  # the toy reward: how many completion characters are in here


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer built in memory (no hub download)."""
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def tiny_config() -> LlamaConfig:
    """A 2-layer, 32-wide Llama over the tokenizer's vocabulary."""
    return LlamaConfig(vocab_size=3 + len(CHARS), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                       bos_token_id=None)


def tiny_model(directory, seed=0) -> LlamaForCausalLM:
    """The tiny Llama with random weights of ``seed``, saved to and loaded from ``directory``
    (TRL loads its reference model from the policy's path when beta > 0)."""
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config()).save_pretrained(directory)
    return LlamaForCausalLM.from_pretrained(directory)


def liked_chars(completions, **columns) -> list[float]:
    return [float(sum(ch in LIKED for ch in text)) for text in completions]
