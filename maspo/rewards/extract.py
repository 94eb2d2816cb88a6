"""Pull the final answer out of a completion, and the optional format bonus.

Both functions run in time linear in the completion length, so hostile completions
(10^6 characters, 10^5 nested braces) cost milliseconds, never a hang.
"""

import re
from collections import deque

BOXED = "\\boxed"
# A number: thousands-separated ("1,234") or plain digits, optional decimals, optionally a
# fraction `a/b`. A leading minus counts only when not glued to a preceding operand, so
# "5-3" yields "3" while "x = -3" yields "-3".
_NUMBER = re.compile(r"(?:(?<![\w)\]}.])-)?(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_BRACE = re.compile(r"[{}]")
_WHITESPACE = re.compile(r"\s*")


def _matching_braces(text: str) -> dict[int, int]:
    """Map the index of every balanced `{` to the index of its `}`, in one pass."""
    stack: list[int] = []
    matches: dict[int, int] = {}
    for match in _BRACE.finditer(text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            matches[stack.pop()] = match.start()
    return matches


def last_boxed(text: str) -> str | None:
    """Content of the last closed `\\boxed{...}` (nested braces allowed), else None.

    An unclosed `\\boxed{` (a truncated generation) is skipped in favour of an earlier
    closed one.
    """
    start = text.rfind(BOXED)
    if start < 0:
        return None
    matches = _matching_braces(text)
    while start >= 0:
        brace = _WHITESPACE.match(text, start + len(BOXED)).end()
        if brace < len(text) and text[brace] == "{" and brace in matches:
            return text[brace + 1 : matches[brace]].strip()
        start = text.rfind(BOXED, 0, start)
    return None


def last_number(text: str) -> str | None:
    """The last number in `text` (int, decimal, negative, fraction `3/4`), commas removed."""
    last = deque(_NUMBER.finditer(text), maxlen=1)
    return last[0].group().replace(",", "") if last else None


def extract_answer(completion: str) -> str | None:
    """The content of the last `\\boxed{...}`, else the last number in the text, else None."""
    boxed = last_boxed(completion)
    return boxed if boxed is not None else last_number(completion)


def format_reward(completion: str) -> float:
    """1.0 if the completion states its answer in a checkable form, else 0.0.

    Checkable means: a closed, non-empty `\\boxed{...}` anywhere, or the whole completion
    (stripped) is a single number such as "56", "-3", "0.5" or "3/4". It says nothing about
    correctness; pair it with an accuracy reward.
    """
    boxed = last_boxed(completion)
    if boxed:
        return 1.0
    return 1.0 if _NUMBER.fullmatch(completion.strip()) else 0.0
