"""Math answer checking with math-verify, bounded in time and safe against hostile text.

`Verifier.score(completions, references)` extracts each completion's answer (lenient:
last `\\boxed{}`, else the stated answer, else the last number; `score_strict`: only the
final `\\boxed{}`, see `extract.py`) and checks it against the reference by symbolic
equivalence with math-verify (Kydlicek et al., HuggingFace, 2025). A reference may be a
string or a sequence of strings (any of them is a correct answer, as OlympiadBench's
`final_answer` lists). Answers and references both pass through `normalize_answer`, so
golds as published (`104.`, `\\textbf{(C) }18`, `62.5\\%`) verify against themselves.

Design:
- math-verify runs in one persistent child process (`math_worker.py`), so its signal-based
  timeouts work whatever thread the trainer calls from, and a check stuck in C code (say
  `9^{9^{9^9}}`) is ended by killing the child; a fresh child starts on the next check.
- Every check has a soft deadline inside the child and a hard one here; a timeout, error
  or crashed child scores 0.0, is counted in `Verifier.stats` and logged as a warning.
- Cheap cases never reach the child: no answer (0.0), an answer longer than
  `MAX_ANSWER_CHARS` (0.0, counted), an answer textually equal to the reference (1.0),
  and pairs already seen (an LRU cache of verdicts).
- A timeout or error is not a verdict and is never cached: the same pair is checked
  again by the next `score` call. Within one call it is not retried (G copies of one
  hostile answer cost one timeout, not G; each copy is counted).
- Two integer literals are compared here, exactly, as math-verify would; this saves
  ~3 ms of sympy per check in the arithmetic task's common case.
- Linux/macOS only (pipes are polled with `select`).
"""

import dataclasses
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType

from maspo.errors import UserError
from maspo.rewards.extract import extract_answer, final_boxed, last_boxed, normalize_answer

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0  # per check; real answers take milliseconds, sympy blow-ups never end
HARD_GRACE_S = 1.0  # extra wait past the child's own deadline before it is killed
STARTUP_TIMEOUT_S = 120.0  # importing sympy can take seconds on a loaded machine
MEMORY_LIMIT_MB = 2048  # child's address-space cap: huge numbers raise MemoryError instead
MAX_ANSWER_CHARS = 1000  # longer "answers" are degenerate; they score 0 without a check
RESULT_CACHE_SIZE = 65536  # (answer, reference) pairs; G samples often share an answer
READ_CHUNK_BYTES = 65536
WORKER_SCRIPT = Path(__file__).with_name("math_worker.py")
_INTEGER = re.compile(r"-?\d+")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
Reference = str | Sequence[str]  # one reference, or several of which any is correct


@dataclasses.dataclass
class VerifierStats:
    """Counters the trainer can log; every field only grows."""

    checks: int = 0  # completions scored
    child_checks: int = 0  # of which sent to math-verify in the child
    cache_hits: int = 0  # of which answered from the result cache
    no_answer: int = 0  # of which had no extractable answer (scored 0)
    too_long: int = 0  # of which had an answer over MAX_ANSWER_CHARS (scored 0)
    timeouts: int = 0  # checks past their deadline (scored 0, never cached)
    errors: int = 0  # checks that raised or crashed the child (scored 0, never cached)
    restarts: int = 0  # child processes killed and replaced
    vote_failures: int = 0  # Maj@k answer comparisons that timed out or failed


def _clean(text: str) -> str:
    """Replace invalid unicode (lone surrogates) so the text can cross a pipe."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _exact_number(text: str) -> Fraction | None:
    """`12`, `12.0`, `24/2` as the exact rational 12; None for anything else."""
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Fraction(text)
    except ZeroDivisionError:
        return None


def _normalize_reference(reference: str) -> str:
    """The reference's last `\\boxed{}` content if it has one (full solutions), else itself,
    normalised like answers (`normalize_answer`)."""
    boxed = last_boxed(reference)
    return normalize_answer(boxed if boxed is not None else reference)


class _Child:
    """One math-verify child process and a line reader on its stdout."""

    def __init__(self, soft_timeout_s: float, memory_limit_mb: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT), str(soft_timeout_s), str(memory_limit_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            start_new_session=True,  # Ctrl-C reaches the trainer, which then kills us
        )
        self._buffer = b""
        self._finalizer = weakref.finalize(self, _kill, self.process)

    def send(self, message: dict) -> None:
        data = memoryview((json.dumps(message) + "\n").encode("ascii"))
        while data:  # the child reads whole lines before replying, so this cannot deadlock
            data = data[os.write(self.process.stdin.fileno(), data) :]

    def receive(self, deadline: float) -> dict | None:
        """The next message, or None if the deadline passed or the child died."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, READ_CHUNK_BYTES)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        self._finalizer()


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        stream.close()


class Verifier:
    """Scores completions against references with math-verify; see the module docstring.

    Use as a context manager, or call `close()`, to stop the child process.
    """

    def __init__(
        self, timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit_mb: int = MEMORY_LIMIT_MB
    ) -> None:
        if not timeout_s > 0:
            raise UserError(f"Verifier timeout_s must be positive, got {timeout_s!r}.")
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.stats = VerifierStats()
        self._child: _Child | None = None
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()
        self._voting = False  # inside answer_classes: failures count as vote_failures

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def child_pid(self) -> int | None:
        """Process id of the running math-verify child, or None before the first check."""
        return None if self._child is None else self._child.process.pid

    def close(self) -> None:
        """Stop the child process; a later check starts a new one."""
        with self._lock:
            self._stop_child()

    def score(self, completions: Sequence[str], references: Sequence[Reference]) -> list[float]:
        """Lenient: 1.0 for each completion whose answer (last `\\boxed{}`, else the stated
        answer, else the last number) equals one of its references, else 0.0."""
        return self._score(completions, references, extract_answer)

    def score_strict(
        self, completions: Sequence[str], references: Sequence[Reference]
    ) -> list[float]:
        """Strict: as `score`, but only the completion's final `\\boxed{}` counts."""
        return self._score(completions, references, final_boxed)

    def same_answer(self, first: str, second: str) -> bool:
        """Whether two extracted answers are equivalent (math-verify), e.g. 12, 12.0, 24/2."""
        return self.answer_classes([first, second])[1] == 0

    def answer_classes(self, answers: Sequence[str | None]) -> list[int | None]:
        """Each answer's equivalence class: the index of the first answer equivalent to it
        (math-verify; `12`, `12.0` and `24/2` share one), None where there is no answer.

        For Maj@k votes. Not counted as `checks`; an answer whose comparison times out or
        fails is its own class (counted in `vote_failures`, never cached, not retried).
        """
        with self._lock:
            self._voting = True
            try:
                return self._classify(answers)
            finally:
                self._voting = False

    def _classify(self, answers: Sequence[str | None]) -> list[int | None]:
        classes: list[int | None] = []
        representatives: list[tuple[int, str]] = []  # (index, normalised answer)
        failed: dict[tuple[str, str], str] = {}
        for index, answer in enumerate(answers):
            if answer is None or not answer.strip():
                classes.append(None)
                continue
            text = normalize_answer(_clean(answer))
            match = next((first for first, other in representatives
                          if self._vote_equal(other, text, failed)), index)
            if match == index:
                representatives.append((index, text))
            classes.append(match)
        return classes

    def _vote_equal(self, first: str, second: str, failed: dict[tuple[str, str], str]) -> bool:
        if first == second:
            return True
        if max(len(first), len(second)) > MAX_ANSWER_CHARS:
            return False
        numbers = _exact_number(first), _exact_number(second)
        if None not in numbers:  # plain numbers: exact, no child (12 == 12.0 == 24/2)
            return numbers[0] == numbers[1]
        broken = {answer for pair in failed for answer in pair}
        if first in broken or second in broken:  # it broke math-verify once: not retried
            return False
        return self._equal(first, second, failed)

    def _score(
        self,
        completions: Sequence[str],
        references: Sequence[Reference],
        extract: Callable[[str], str | None],
    ) -> list[float]:
        if len(completions) != len(references):
            raise ValueError(f"got {len(completions)} completions but {len(references)} references")
        with self._lock:
            failed: dict[tuple[str, str], str] = {}  # this call's timeouts/errors: not retried
            return [self._score_one(extract(c), r, failed) for c, r in zip(completions, references)]

    def _score_one(
        self, answer: str | None, reference: Reference, failed: dict[tuple[str, str], str]
    ) -> float:
        self.stats.checks += 1
        if answer is None or not answer:
            self.stats.no_answer += 1
            return 0.0
        if len(answer) > MAX_ANSWER_CHARS:
            self.stats.too_long += 1
            return 0.0
        golds = [reference] if isinstance(reference, str) else list(reference)
        if not golds:
            raise ValueError("a reference list needs at least one answer")
        answer = normalize_answer(_clean(answer))
        for gold in golds:
            if self._equal(answer, _clean(_normalize_reference(gold)), failed):
                return 1.0
        return 0.0

    def _equal(self, answer: str, gold: str, failed: dict[tuple[str, str], str]) -> bool:
        """One normalised pair: textual or integer equality, the cache, else the child."""
        if answer == gold:
            return True
        if _INTEGER.fullmatch(answer) and _INTEGER.fullmatch(gold):
            return int(answer) == int(gold)
        key = (answer, gold)
        if key in self._cache:
            self.stats.cache_hits += 1
            self._cache.move_to_end(key)
            return self._cache[key]
        if key in failed:  # failed earlier in this call: count it again, do not retry
            self._count(failed[key])
            return False
        verdict = self._check_in_child(answer, gold)
        if isinstance(verdict, str):  # a failure is not a verdict: never cached
            failed[key] = verdict
            return False
        self._cache[key] = verdict
        if len(self._cache) > RESULT_CACHE_SIZE:
            self._cache.popitem(last=False)
        return verdict

    def _check_in_child(self, answer: str, gold: str) -> bool | str:
        """math-verify's verdict, or the failure ("timeout" / "error") in its place."""
        self.stats.child_checks += 1
        child = self._running_child()
        try:
            child.send({"pred": answer, "gold": gold})
        except OSError:  # the child died between checks
            reply = None
        else:
            reply = child.receive(time.monotonic() + self.timeout_s + HARD_GRACE_S)
        if reply is None:
            crashed = child.process.poll() is not None
            self._stop_child()
            self.stats.restarts += 1
            status = "error" if crashed else "timeout"
            self._count_failure(status, answer)
            return status
        if reply["status"] != "ok":
            self._count_failure(reply["status"], answer)
            return "timeout" if reply["status"] == "timeout" else "error"
        return bool(reply["correct"])

    def _count(self, status: str) -> None:
        if self._voting:  # comparing two samples' answers is not a verdict on a sample
            self.stats.vote_failures += 1
        elif status == "timeout":
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1

    def _count_failure(self, status: str, answer: str) -> None:
        self._count(status)
        logger.warning(
            "math-verify %s on answer %r (scored 0.0; %d timeouts, %d errors so far)",
            status,
            answer[:80],
            self.stats.timeouts,
            self.stats.errors,
        )

    def _running_child(self) -> _Child:
        if self._child is not None:
            return self._child
        child = _Child(self.timeout_s, self.memory_limit_mb)
        hello = child.receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if hello is None or hello["status"] != "ready":
            child.kill()
            detail = "no reply" if hello is None else hello.get("message", hello["status"])
            raise UserError(f"The math-verify worker process failed to start ({detail}).")
        self._child = child
        return child

    def _stop_child(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None


_default: Verifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> Verifier:
    """The process-wide Verifier used by `math_reward` and the built-in "math" reward."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Verifier()
        return _default


def math_reward(completion: str, reference: Reference) -> float:
    """Lenient: 1.0 if the completion's answer is mathematically equal to `reference`."""
    return default_verifier().score([completion], [reference])[0]


def strict_math_reward(completion: str, reference: Reference) -> float:
    """Strict: 1.0 if the completion's final `\\boxed{}` equals `reference`, else 0.0."""
    return default_verifier().score_strict([completion], [reference])[0]
