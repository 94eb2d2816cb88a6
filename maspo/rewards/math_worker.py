"""Child process that runs math-verify; started and killed by `maspo.rewards.verifier`.

Run as a script (`python -P math_worker.py SOFT_TIMEOUT_S MEMORY_LIMIT_MB`); it imports
only the standard library and math-verify. Protocol, one JSON object per line:

    parent -> child  {"pred": "<answer>", "gold": "<reference>"}
    child -> parent  {"status": "ok" | "timeout" | "error", "correct": bool}

The child first writes {"status": "ready"} (or {"status": "fatal", "message": ...}).
Each check runs under a SIGALRM soft deadline (this is the child's main thread, so
signals work); the parent adds a hard deadline and kills the child when a check is stuck
in C code that never returns to the interpreter (e.g. a huge integer power).
"""

import functools
import json
import logging
import resource
import signal
import sys

GOLD_CACHE_SIZE = 4096  # references repeat across a group of G completions


class SoftTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so math-verify's `except Exception` lets it pass."""


def _on_alarm(signum: int, frame: object) -> None:
    raise SoftTimeout


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(soft_timeout_s: float, memory_limit_mb: int) -> None:
    """Answer check requests from stdin until it closes."""
    limit = memory_limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # huge numbers -> MemoryError
    sys.setrecursionlimit(10_000)  # deep nesting -> RecursionError, not a C stack overflow
    try:
        from math_verify import parse, verify
    except Exception as error:  # reported to the parent, which raises
        _reply({"status": "fatal", "message": f"{type(error).__name__}: {error}"})
        return
    # We time out ourselves (below), so math-verify's own signal timeouts are disabled and
    # its warning about that is noise.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGALRM, _on_alarm)

    @functools.lru_cache(maxsize=GOLD_CACHE_SIZE)
    def parse_gold(gold: str) -> list:
        return parse(f"\\boxed{{{gold}}}", parsing_timeout=None)

    def check(pred: str, gold: str) -> bool:
        parsed_pred = parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
        return bool(verify(parse_gold(gold), parsed_pred, timeout_seconds=None))

    _reply({"status": "ready"})
    for line in sys.stdin:
        status, correct = "ok", False
        try:
            request = json.loads(line)
            signal.setitimer(signal.ITIMER_REAL, soft_timeout_s)
            try:
                correct = check(request["pred"], request["gold"])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except SoftTimeout:
            status = "timeout"
        except Exception:  # any failure scores 0 and is counted
            status = "error"
        _reply({"status": status, "correct": correct})


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]))
