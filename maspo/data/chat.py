"""Turn an Example's prompt into the text a model is fed, with its chat template if any."""

from typing import Any

from maspo.data.example import Prompt
from maspo.errors import UserError


def render_prompt(
    tokenizer: Any,
    prompt: Prompt,
    system_prompt: str | None = None,
    use_chat_template: bool = True,
) -> str:
    """The prompt as model input text.

    With a tokenizer that has a chat template (and `use_chat_template`), the messages go
    through `apply_chat_template(..., add_generation_prompt=True)`; otherwise the message
    contents are joined by blank lines. A plain-string prompt is one user message, and
    `system_prompt`, if given, is put first.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system_prompt is not None:
        if messages and messages[0].get("role") == "system":
            raise UserError(
                "A system_prompt was given but the prompt already starts with a system message."
            )
        messages = [{"role": "system", "content": system_prompt}, *messages]
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except Exception as error:  # jinja2 raises TemplateError from the template's checks
            raise UserError(
                f"The tokenizer's chat template rejected the prompt ({error})."
            ) from None
    return "\n\n".join(message["content"] for message in messages)
