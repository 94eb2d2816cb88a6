"""render_prompt: the tokenizer's chat template when it has one, plain text otherwise."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from maspo.data import render_prompt
from maspo.errors import UserError

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    """A real word-level tokenizer, with or without a chat template."""
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    result = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    result.chat_template = chat_template
    return result


def test_chat_template_with_generation_prompt_and_system() -> None:
    text = render_prompt(tokenizer(TEMPLATE), "What is 7 x 8?", system_prompt="Be brief.")
    assert text == "<|system|>Be brief.\n<|user|>What is 7 x 8?\n<|assistant|>"


def test_message_list_prompt_goes_through_the_template() -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert render_prompt(tokenizer(TEMPLATE), messages).endswith("<|assistant|>b\n<|assistant|>")


def test_plain_text_without_template_or_when_disabled() -> None:
    assert render_prompt(tokenizer(None), "What is 2 + 2?") == "What is 2 + 2?"
    text = render_prompt(tokenizer(TEMPLATE), "Q?", system_prompt="S.", use_chat_template=False)
    assert text == "S.\n\nQ?"


def test_system_prompt_twice_is_a_user_error() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(UserError, match="already starts with a system message"):
        render_prompt(tokenizer(TEMPLATE), messages, system_prompt="again")


def test_template_refusal_is_a_user_error() -> None:
    refusing = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
    )
    with pytest.raises(UserError, match="chat template rejected the prompt"):
        render_prompt(tokenizer(refusing), "hi", system_prompt="s")
