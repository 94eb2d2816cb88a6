"""Math answer checking with math-verify, bounded in time and safe against hostile text.

`Verifier.score(completions, references)` extracts each completion's answer (last
`\\boxed{}` else last number, see `extract.py`) and checks it against the reference by
symbolic equivalence with math-verify (Kydlicek et al., HuggingFace, 2025).

Design:
- math-verify runs in one persistent child process (`math_worker.py`), so its signal-based
  timeouts work whatever thread the trainer calls from, and a check stuck in C code (say
  `9^{9^{9^9}}`) is ended by killing the child; a fresh child starts on the next check.
- Every check has a soft deadline inside the child and a hard one here; a timeout, error
  or crashed child scores 0.0, is counted in `Verifier.stats` and logged as a warning.
- Cheap cases never reach the child: no answer (0.0), an answer longer than
  `MAX_ANSWER_CHARS` (0.0, counted), an answer textually equal to the reference (1.0),
  and pairs already seen (an LRU cache of results, failures included, so G copies of
  one hostile answer cost one timeout, not G).
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
from pathlib import Path
from types import TracebackType

from maspo.errors import UserError
from maspo.rewards.extract import extract_answer, last_boxed

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


@dataclasses.dataclass
class VerifierStats:
    """Counters the trainer can log; every field only grows."""

    checks: int = 0  # completions scored
    child_checks: int = 0  # of which sent to math-verify in the child
    cache_hits: int = 0  # of which answered from the result cache
    no_answer: int = 0  # of which had no extractable answer (scored 0)
    too_long: int = 0  # of which had an answer over MAX_ANSWER_CHARS (scored 0)
    timeouts: int = 0  # checks past their deadline (scored 0)
    errors: int = 0  # checks that raised or crashed the child (scored 0)
    restarts: int = 0  # child processes killed and replaced


def _clean(text: str) -> str:
    """Replace invalid unicode (lone surrogates) so the text can cross a pipe."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _normalize_reference(reference: str) -> str:
    """The reference's last `\\boxed{}` content if it has one (full solutions), else itself."""
    boxed = last_boxed(reference)
    return (boxed if boxed is not None else reference).strip().strip("$").strip()


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
        self._cache: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

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

    def score(self, completions: list[str], references: list[str]) -> list[float]:
        """1.0 for each completion whose answer equals its reference, else 0.0."""
        if len(completions) != len(references):
            raise ValueError(f"got {len(completions)} completions but {len(references)} references")
        with self._lock:
            return [self._score_one(c, r) for c, r in zip(completions, references)]

    def _score_one(self, completion: str, reference: str) -> float:
        self.stats.checks += 1
        answer = extract_answer(completion)
        if answer is None or not answer:
            self.stats.no_answer += 1
            return 0.0
        if len(answer) > MAX_ANSWER_CHARS:
            self.stats.too_long += 1
            return 0.0
        answer, gold = _clean(answer), _clean(_normalize_reference(reference))
        if answer == gold:
            return 1.0
        if _INTEGER.fullmatch(answer) and _INTEGER.fullmatch(gold):
            return 1.0 if int(answer) == int(gold) else 0.0
        key = (answer, gold)
        if key in self._cache:
            self.stats.cache_hits += 1
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._check_in_child(answer, gold)
        self._cache[key] = result
        if len(self._cache) > RESULT_CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def _check_in_child(self, answer: str, gold: str) -> float:
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
            self._count_failure("error" if crashed else "timeout", answer)
            return 0.0
        if reply["status"] != "ok":
            self._count_failure(reply["status"], answer)
            return 0.0
        return 1.0 if reply["correct"] else 0.0

    def _count_failure(self, status: str, answer: str) -> None:
        if status == "timeout":
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1
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


def math_reward(completion: str, reference: str) -> float:
    """1.0 if the completion's answer is mathematically equal to `reference`, else 0.0."""
    return default_verifier().score([completion], [reference])[0]
