"""Countdown verifier: does the completion's expression reach the target with the numbers?

Rules (as in the TinyZero Countdown task, Pan et al., 2025): the expression uses every
given number exactly once (a number listed twice may be used twice), only integer
literals, binary `+ - * /` and parentheses; no unary minus, no concatenating digits.
Division is exact (rational arithmetic), division by zero fails. Deviations: none.

The expression is parsed with `ast` and walked against a whitelist; nothing is eval'd.
"""

import ast
import re
from collections import Counter
from fractions import Fraction

from maspo.rewards.extract import last_boxed

MAX_EXPRESSION_CHARS = 200  # a 6-number expression needs < 60; caps ast recursion depth
MAX_LITERAL_DIGITS = 6  # countdown numbers are small; caps the size of any product
_ALLOWED_CHARS = re.compile(r"[0-9+\-*/()\s]+")  # no names, no 0x/1e3/1_000 literals
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
# Spellings models use for the four operators, mapped to Python's.
_SYMBOLS = {
    "\\times": "*",
    "\\cdot": "*",
    "×": "*",
    "·": "*",
    "\\div": "/",
    "÷": "/",
    "\\left": "",
    "\\right": "",
    "−": "-",
}


def extract_expression(completion: str) -> str | None:
    """The last `<answer>...</answer>`, else the last `\\boxed{...}`, else the last line.

    Anything from the first `=` on is dropped, so "(3+5)*2 = 16" yields "(3+5)*2".
    """
    close = completion.rfind("</answer>")
    open_ = completion.rfind("<answer>", 0, close) if close >= 0 else -1
    if open_ >= 0:
        text = completion[open_ + len("<answer>") : close]
    else:
        boxed = last_boxed(completion)
        if boxed is not None:
            text = boxed
        else:
            lines = [line for line in completion.strip().splitlines() if line.strip()]
            if not lines:
                return None
            text = lines[-1]
    text = text.split("=", 1)[0]
    for symbol, replacement in _SYMBOLS.items():
        text = text.replace(symbol, replacement)
    text = text.strip().strip("$").strip()
    return text or None


def _evaluate(node: ast.AST, used: list[int]) -> Fraction | None:
    """Value of a whitelisted expression tree, appending literals to `used`; else None."""
    if isinstance(node, ast.Constant):
        value = node.value
        if type(value) is not int or len(str(value)) > MAX_LITERAL_DIGITS:
            return None
        used.append(value)
        return Fraction(value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left = _evaluate(node.left, used)
        right = _evaluate(node.right, used)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return None if right == 0 else left / right
    return None


def evaluate_expression(expression: str, numbers: list[int]) -> Fraction | None:
    """Exact value of `expression` if it follows the rules for `numbers`, else None."""
    if len(expression) > MAX_EXPRESSION_CHARS or not _ALLOWED_CHARS.fullmatch(expression):
        return None
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    used: list[int] = []
    value = _evaluate(tree.body, used)
    if value is None or Counter(used) != Counter(numbers):
        return None
    return value


def countdown_reward(completion: str, numbers: list[int], target: int) -> float:
    """1.0 if the completion's expression uses each number once and equals target, else 0.0."""
    expression = extract_expression(completion)
    if expression is None:
        return 0.0
    return 1.0 if evaluate_expression(expression, list(numbers)) == target else 0.0
