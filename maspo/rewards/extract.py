"""Pull the final answer out of a completion, normalise answers, and the format bonus.

Two extraction rules (``data.answer_check``):
- strict (``final_boxed``): only the content of the final ``\\boxed{...}`` counts, as in
  the papers' evaluations; a completion whose last ``\\boxed{`` is unclosed (cut off) has
  no answer.
- lenient (``extract_answer``): the last closed ``\\boxed{}``; else the last number on
  the line of the last "answer is" / "answer:" / "####" marker (else the first number
  after it); else the last number in the text.

``normalize_answer`` is applied to extracted answers and references alike (see its doc).
Every function runs in time linear in the text length, so hostile completions (10^6
characters, 10^5 nested braces) cost milliseconds, never a hang.
"""

import re
from collections import deque
from decimal import Decimal, InvalidOperation

BOXED = "\\boxed"
# A number: thousands-separated ("1,234") or plain digits, optional decimals, optionally a
# fraction `a/b` or a decimal exponent (`1e5`, `2.5E-3`). A leading minus counts only when
# not glued to a preceding operand, so "5-3" yields "3" while "x = -3" yields "-3".
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}.])-)?(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
    r"(?:[eE][-+]?\d+(?![\w.])|/\d+)?"
)
# "The answer is 42", "Answer: 42", GSM8K's "#### 42": the marker's line states the
# answer, even when a later line holds other numbers (a date, a signature).
_ANSWER_MARKER = re.compile(r"answer\s*(?:is|:)|####", re.IGNORECASE)
_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][-+]?\d+")
MAX_EXPONENT = 100  # 1e100 written out is 101 digits; larger exponents stay as written
_BRACE = re.compile(r"[{}]")
_WHITESPACE = re.compile(r"\s*")
# Formatting-only wrappers unwrapped by normalize_answer (no nested braces inside).
_BOLD = re.compile(r"\\(?:textbf|mathbf|boldsymbol)\{([^{}]*)\}")
# A multiple-choice label before the value: "(C) 18", "\text{(C) }18", "C) 18".
_CHOICE_LABEL = re.compile(r"^(?:\\text\{\s*)?\(?([A-E])\)\s*\}?\s*(?=\S)")
_PERCENT = re.compile(r"\s*\\?%$")


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


def _boxed_content(text: str, start: int, matches: dict[int, int]) -> str | None:
    brace = _WHITESPACE.match(text, start + len(BOXED)).end()
    if brace < len(text) and text[brace] == "{" and brace in matches:
        return text[brace + 1 : matches[brace]].strip()
    return None


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
        content = _boxed_content(text, start, matches)
        if content is not None:
            return content
        start = text.rfind(BOXED, 0, start)
    return None


def final_boxed(text: str) -> str | None:
    """Content of the final `\\boxed{...}` if it is closed, else None (the strict rule)."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    return _boxed_content(text, start, _matching_braces(text))


def last_number(text: str) -> str | None:
    """The last number in `text` (int, decimal, negative, fraction `3/4`), commas removed."""
    last = deque(_NUMBER.finditer(text), maxlen=1)
    return last[0].group().replace(",", "") if last else None


def _stated_answer(text: str) -> str | None:
    """The last number on the line of the last answer marker ("answer is", "Answer:",
    "####"), so "Answer: 7 x 8 = 56" gives 56; if that line has none, the next number."""
    marker = deque(_ANSWER_MARKER.finditer(text), maxlen=1)
    if not marker:
        return None
    start = marker[0].end()
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    number = last_number(line)
    if number is not None:
        return number
    following = _NUMBER.search(text, start)
    return following.group().replace(",", "") if following else None


def extract_answer(completion: str) -> str | None:
    """Lenient: the last `\\boxed{...}`, else the stated answer, else the last number."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    stated = _stated_answer(completion)
    return stated if stated is not None else last_number(completion)


def normalize_answer(answer: str) -> str:
    """An answer as math-verify should read it, for golds as published and predictions.

    Strips `$` delimiters, bold wrappers (`\\textbf{(073)}` -> `(073)`), a multiple-choice
    label before a value (`(C) 18` -> `18`), a trailing full stop (`104.`) and a trailing
    percent sign (`62.5\\%` -> `62.5`: a percentage is compared by its number), and writes
    a decimal exponent out (`1e5` -> `100000`). Anything else is left to math-verify.
    """
    text = answer.strip().strip("$").strip()
    text = _BOLD.sub(lambda m: m.group(1), text).strip()
    label = _CHOICE_LABEL.match(text)
    if label is not None:
        text = text[label.end() :].strip()
    text = text.removesuffix(".").rstrip()
    text = _PERCENT.sub("", text)
    if _SCIENTIFIC.fullmatch(text):
        try:
            value = Decimal(text)
        except InvalidOperation:
            return text
        if abs(value.adjusted()) <= MAX_EXPONENT:
            text = format(value.normalize(), "f")
    return text or answer.strip()


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
