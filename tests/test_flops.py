"""The model-FLOP count against a count by hand, for the tiny Llama of maspo.testing."""

from __future__ import annotations

import math

import pytest
import torch

from maspo.flops import (
    ModelShape,
    decoder_flops,
    forward_flops,
    matmul_throughput,
    rollout_flops,
    update_flops,
)
from maspo.rollout import Rollout
from maspo.testing import tiny_model, tiny_tokenizer

# The tiny model: hidden 32, 2 layers, 4 query heads and 2 key/value heads of 8, MLP 64,
# vocabulary 101 (97 printable characters and 4 special tokens), tied embeddings.
VOCAB = 101
LAYER = 32 * 32 + 32 * 16 + 32 * 16 + 32 * 32 + 3 * 32 * 64  # q, k, v, o, gate, up, down
DECODER = 2 * LAYER  # 18,432 matmul weights
HEAD = 32 * VOCAB  # 3,232
ATTENTION = 4 * 2 * 32  # 4 x layers x query width: FLOPs per (token, key attended)


@pytest.fixture(scope="module")
def shape() -> ModelShape:
    return ModelShape.of(tiny_model(tiny_tokenizer()))


def test_the_shape_is_read_from_the_model(shape):
    assert len(tiny_tokenizer()) == VOCAB
    assert (shape.layers, shape.attention_width) == (2, 32)
    assert (shape.decoder_params, shape.head_params) == (DECODER, HEAD)
    assert sorted(shape.linears) == sorted([(32, 32, 4), (32, 16, 4), (32, 64, 4),
                                            (64, 32, 2), (32, VOCAB, 1)])


def test_decoder_flops_count_weights_and_the_keys_each_token_attends(shape):
    # positions 3 and 4 of a sequence whose first 3 are cached: they attend 4 and 5 keys
    assert decoder_flops(shape, 3, 5) == 2 * DECODER * 2 + ATTENTION * (4 + 5)
    assert decoder_flops(shape, 3, 3) == 0


def _rollout() -> Rollout:
    """One prompt of 3 real tokens (left-padded to 4), its G = 2 completions of 2 and 1
    tokens (right-padded to 2), and a second prompt of 4 tokens with completions of 3."""
    prompt_mask = torch.tensor([[0, 1, 1, 1]] * 2 + [[1, 1, 1, 1]] * 2)
    completion_mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]])
    ids = torch.randint(4, VOCAB, (4, 7))
    return Rollout(input_ids=ids, attention_mask=torch.cat([prompt_mask, completion_mask], 1),
                   completion_mask=completion_mask.bool(), prompt_len=4,
                   texts=["ab", "c", "def", "ghi"], truncated=torch.zeros(4, dtype=torch.bool),
                   group_size=2, sampling_logprobs=torch.zeros(4, 3))


def test_a_rollout_counts_each_prompt_once_and_no_padding(shape):
    first_prompt = 2 * DECODER * 3 + ATTENTION * (1 + 2 + 3)  # 3 tokens, attending 1, 2, 3
    first_a = 2 * DECODER * 1 + ATTENTION * 4 + 2 * HEAD * 2  # runs token 1 of 2; 2 heads
    first_b = 2 * HEAD * 1  # its one token comes from the prompt's last position
    second_prompt = 2 * DECODER * 4 + ATTENTION * (1 + 2 + 3 + 4)
    second_row = 2 * DECODER * 2 + ATTENTION * (5 + 6) + 2 * HEAD * 3  # each of 2 rows
    first_group = first_prompt + first_a + first_b
    assert first_group == 169_408  # the arithmetic written out once
    assert rollout_flops(shape, _rollout()) == first_group + second_prompt + 2 * second_row
    assert forward_flops(shape, [3], [2, 1], [0, 0]) == first_group
    # the update: forward and backward (twice the forward) of the rows it computes
    assert update_flops(shape, _rollout(), torch.tensor([0, 1])) == 3 * first_group
    assert update_flops(shape, _rollout(), torch.tensor([1])) == 3 * (first_prompt + first_b)


def test_matmul_throughput_is_measured_on_the_model_shapes(shape):
    flops = matmul_throughput(shape, torch.float32, "cpu", tokens=8, seconds=0.01)
    assert math.isfinite(flops) and flops > 0


def test_layers_of_unknown_kind_are_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=4))
    with pytest.raises(NotImplementedError, match="Conv1D"):
        ModelShape.of(model)
