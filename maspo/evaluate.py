"""Sampling evaluation: n completions per problem, scored by the trainer's own verifier.

Metrics per dataset, each a mean over problems:
- Avg@n: mean accuracy over all n samples. Avg@k has the same expectation for every
  k <= n, so it is estimated from all n samples and reported once, as ``avg@n``.
- Pass@k: the unbiased estimator 1 - C(n - c, k) / C(n, k) (Chen et al. 2021, eq. 1).
- Maj@k: majority vote over the extracted answers of k samples (the final ``\\boxed{}``
  for the strict check, else ``maspo.rewards.extract_answer``); for k < n, the mean over
  the floor(n / k) disjoint consecutive groups of k samples (see ``maj_at_k``). Votes are
  on equivalence classes of answers (math-verify: ``12``, ``12.0`` and ``24/2`` are one
  vote), so Maj@k suits tasks with one final answer (math), not Countdown.
Across datasets the average is the unweighted mean of the per-dataset values, as the
papers average over benchmarks. The printed table is shaped like the papers': one column
per benchmark and the average, one row per metric (in %), plus the problems and the
math-verify timeouts and errors (each scored 0, never cached) of every dataset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maspo.config import (
    EVAL_BATCH_ROWS,
    EVAL_MAX_NEW_TOKENS,
    EVAL_MAX_ROWS,
    check_setting,
)
from maspo.data import Example, render_prompt
from maspo.errors import FieldError, UserError
from maspo.paths import EVAL_FILES
from maspo.rewards import default_verifier, extract_answer, final_boxed
from maspo.rollout import LocalSampler, SamplingSettings
from maspo.rollout.sampler import rows_that_fit
from maspo.scoring import Scorer
from maspo.seeds import derive_seed
from maspo.tables import markdown_table, write_csv

if TYPE_CHECKING:
    from maspo.config import Config
    from maspo.eval_specs import EvalDataset


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k = 1 - C(n - c, k) / C(n, k) for c correct out of n samples.

    Numerically stable product form 1 - prod_{i = n-c+1}^{n} (1 - k / i): no huge binomials.
    """
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError("n, c and k must be integers")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_correct(answers: Sequence[Hashable | None], correct: Sequence[bool]) -> bool:
    """Whether the majority answer of one group of samples is correct.

    Answers are vote labels (``ProblemResult.answers``: equivalent answers share one),
    compared as they are (strings stripped); samples with no answer (None) do not vote.
    A tie goes to the answer that appears first. The voted answer is correct when the
    verifier judged correct the first sample that gave it. No votes: incorrect.
    """
    votes: dict[Hashable, int] = {}
    verdict: dict[Hashable, bool] = {}
    for answer, ok in zip(answers, correct, strict=True):
        if answer is None:
            continue
        key = answer.strip() if isinstance(answer, str) else answer
        votes[key] = votes.get(key, 0) + 1
        verdict.setdefault(key, bool(ok))
    if not votes:
        return False
    return verdict[max(votes, key=votes.__getitem__)]  # max keeps the first of ties


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """Maj@k of one problem: mean majority-vote correctness over floor(n / k) disjoint
    consecutive groups of k samples (samples left over after the last group are unused)."""
    n = len(answers)
    if len(correct) != n:
        raise ValueError(f"{n} answers but {len(correct)} verdicts")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    groups = n // k
    return sum(majority_correct(answers[g * k:(g + 1) * k], correct[g * k:(g + 1) * k])
               for g in range(groups)) / groups


STRICT_REWARD = "math_strict"  # its answer is the final \\boxed{} only


def answer_extractor(reward: str) -> Callable[[str], str | None]:
    """How an example's reward reads a completion's answer (for Maj@k votes)."""
    return final_boxed if reward == STRICT_REWARD else extract_answer


@dataclass
class ProblemResult:
    example: Example
    completions: list[str]
    correct: list[bool]
    rewards: list[float]
    # Maj@k vote labels: each sample's extracted answer written as the first equivalent
    # answer among this problem's samples (math-verify), so one class is one string.
    answers: list[str | None] = field(default_factory=list)  # filled if empty
    extracted: list[str | None] = field(default_factory=list)  # as written; filled if empty

    def __post_init__(self) -> None:
        if not self.extracted:
            extract = answer_extractor(self.example.reward)
            self.extracted = [extract(text) for text in self.completions]
        if not self.answers:
            classes = default_verifier().answer_classes(self.extracted)
            self.answers = [None if c is None else self.extracted[c] for c in classes]


def avg_accuracy(results: Sequence[ProblemResult]) -> float:
    """Avg@n: mean correctness over every sample of every problem."""
    total = sum(len(r.correct) for r in results)
    return sum(sum(r.correct) for r in results) / max(total, 1)


def verdicts_record(results: Sequence[ProblemResult], settings: dict[str, Any],
                    elapsed_s: float) -> dict[str, Any]:
    """A held-out evaluation as a run folder keeps it (``final_eval.json``): the settings,
    and per problem its verdicts, answers and what the model wrote."""
    return {"settings": settings, "problems": len(results),
            "correct": [r.correct for r in results], "answers": [r.answers for r in results],
            "completions": [r.completions for r in results], "eval_time_s": elapsed_s}


# ---------------------------------------------------------------------------------------
# Metrics of a dataset from per-problem verdicts (what eval.json and a run's cached final
# evaluation keep).


def parse_ks(text: str, n: int) -> list[int]:
    """``"1,4,8"`` -> [1, 4, 8]; each k must be an integer in 1..n (UserError otherwise)."""
    ks: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if part == "n":
            value = n
        else:
            try:
                value = int(part)
            except ValueError:
                raise UserError(f"--k value {part!r} is not an integer") from None
        if not 1 <= value <= n:
            raise UserError(f"--k value {value} must be between 1 and n = {n} samples "
                            "per problem (raise --n)")
        if value not in ks:
            ks.append(value)
    return sorted(ks)


def metric_names(n: int, ks: Sequence[int]) -> list[str]:
    """Column names in table order: avg@n, pass@k..., maj@k..."""
    return [f"avg@{n}"] + [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks]


def verdict_metrics(correct: Sequence[Sequence[bool]],
                    answers: Sequence[Sequence[Hashable | None]],
                    ks: Sequence[int]) -> dict[str, float]:
    """avg@n, pass@k and maj@k (means over problems) from each problem's n verdicts and
    vote labels (``ProblemResult.answers``)."""
    if not correct:
        raise ValueError("no problems to score")
    n = len(correct[0])
    if any(len(c) != n for c in correct):
        raise ValueError("every problem needs the same number of samples")
    problems = len(correct)
    out = {f"avg@{n}": sum(sum(c) for c in correct) / (problems * n)}
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(n, int(sum(c)), k) for c in correct) / problems
    for k in ks:
        out[f"maj@{k}"] = sum(maj_at_k(a, c, k)
                              for a, c in zip(answers, correct, strict=True)) / problems
    return out


def dataset_metrics(results: Sequence[ProblemResult], ks: Sequence[int]) -> dict[str, float]:
    """``verdict_metrics`` of sampled results."""
    return verdict_metrics([r.correct for r in results], [r.answers for r in results], ks)


def average_metrics(per_dataset: Sequence[dict[str, float]]) -> dict[str, float]:
    """Unweighted mean over datasets of each metric (every dataset counts the same)."""
    keys = list(per_dataset[0])
    return {key: sum(m[key] for m in per_dataset) / len(per_dataset) for key in keys}


# ---------------------------------------------------------------------------------------
# `maspo eval`: several datasets, one table, JSON / CSV / samples files.


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation samples: the rollout's ``SamplingSettings`` and what evaluation adds.

    The one description used by the trainer's held-out evaluation, ``maspo eval`` and
    ``maspo compare``'s final evaluation; build it with ``eval_settings``.
    """

    sampling: SamplingSettings  # length cap, temperature, top_p, greedy
    n: int = 8  # completions per problem
    seed: int = 0  # sampling seed; the same seed gives the same completions on CPU
    # prompts per rollout call (x n completions each); None: ``batch_prompts``'s default.
    # What is sampled does not depend on it (``problem_seeds``), only speed and memory do.
    prompts_per_batch: int | None = None
    system_prompt: str | None = None  # None: the chat template's default
    chat_template: bool = True  # render prompts with the tokenizer's chat template

    def record(self) -> dict[str, Any]:
        """Flat JSON form, as eval.json and a comparison's cached final evaluations keep it:
        what the completions depend on (not the batch size, which they do not)."""
        s = self.sampling
        return {"n": self.n, "max_new_tokens": s.max_new_tokens, "temperature": s.temperature,
                "top_p": s.top_p, "greedy": s.greedy, "seed": self.seed,
                "system_prompt": self.system_prompt, "chat_template": self.chat_template}

    def batch_prompts(self, rows_that_fit: int = 0) -> int:
        """Prompts per rollout call: ``prompts_per_batch`` if given, else as many (at least
        one) as make ``EVAL_BATCH_ROWS`` (128) completions, or more, up to
        ``EVAL_MAX_ROWS`` (512), when ``rows_that_fit`` completions keep the call's
        key/value cache within ``CALL_POSITIONS`` (2^15) positions
        (``maspo.rollout.sampler.rows_that_fit``).

        A decode step reads every weight once whatever the number of rows, so more rows a
        call cost less each; the cache grows with rows x positions, so long prompts or
        completions keep the 128. The study's held-out set (256 prompts of 51 tokens, 16
        new, n = 1) is one call of 256 instead of two of 128: 18.3 against 19.8 CPU-s on
        one thread, the same completions.
        """
        if self.prompts_per_batch:
            return self.prompts_per_batch
        rows = max(EVAL_BATCH_ROWS, min(EVAL_MAX_ROWS, rows_that_fit))
        return max(1, rows // self.n)


SEED_BLOCK = 16  # problems i and j share a base seed when i // 16 == j // 16 (problem_seeds)


def problem_seeds(seed: int, first: int, count: int) -> list[int]:
    """The generator seed of the completions of problems ``first`` .. ``first + count - 1``
    of an evaluation with sampling seed ``seed``, whatever the batch size: problem i's come
    from (seed + 16 * (i // 16), i % 16). These are the seeds it got when each batch of 16
    prompts was sampled with seed + its first index, so evaluations recorded then (at the
    batch size of 16 they all used) are the same evaluations now."""
    return [derive_seed(seed + SEED_BLOCK * (i // SEED_BLOCK), i % SEED_BLOCK)
            for i in range(first, first + count)]


def same_settings(saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether an evaluation recorded with ``saved`` settings (``EvalSettings.record``) is
    the one ``wanted`` describes. A record from before the batch size stopped mattering
    names it; at 16 its completions were drawn with today's seeds (``problem_seeds``)."""
    saved = dict(saved)
    return saved.pop("prompts_per_batch", SEED_BLOCK) == SEED_BLOCK and saved == wanted


HELDOUT_SEED_OFFSET = 1_000_003  # held-out sampling seeds differ from every training step's


def heldout_seed(train_seed: int) -> int:
    """The sampling seed of a run's held-out evaluations (the trainer's, and a
    comparison's final one, so the two can be the same evaluation)."""
    return train_seed + HELDOUT_SEED_OFFSET


def eval_settings(run: Config | None = None, *, n: int, seed: int = 0,
                  max_new_tokens: int | None = None, temperature: float | None = None,
                  top_p: float | None = None, greedy: bool = False,
                  prompts_per_batch: int | None = None, system_prompt: str | None = None,
                  chat_template: bool | None = None) -> EvalSettings:
    """Evaluation settings; what is not given comes from ``run`` (its length cap, top_p,
    ``train.eval_temperature``, system prompt and chat template), else the defaults.

    An impossible value is a FieldError naming the setting (``maspo.config.SETTINGS``).
    """
    if max_new_tokens is None:
        max_new_tokens = run.rollout.max_new_tokens if run else EVAL_MAX_NEW_TOKENS
    if temperature is None:
        temperature = run.train.eval_temperature if run else 1.0
    if top_p is None:
        top_p = run.rollout.top_p if run else 1.0
    if system_prompt is None and run is not None:
        system_prompt = run.data.system_prompt
    if chat_template is None:
        chat_template = run.data.chat_template if run else True
    check_setting("eval.n", n)
    if greedy and n > 1:
        raise FieldError("eval.greedy", " makes every sample identical; set 'eval.n' to 1")
    if prompts_per_batch is not None:
        check_setting("eval.prompts_per_batch", prompts_per_batch)
    sampling = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, greedy=greedy)
    return EvalSettings(sampling, n=n, seed=seed, prompts_per_batch=prompts_per_batch,
                        system_prompt=system_prompt, chat_template=chat_template)


def prompts_per_call(tokenizer, rendered: Sequence[str], settings: EvalSettings) -> int:
    """``settings.batch_prompts`` for these rendered prompts (their longest, in tokens)."""
    if settings.prompts_per_batch or not rendered:
        return settings.batch_prompts()
    fit = rows_that_fit(tokenizer, rendered, settings.sampling.max_new_tokens)
    return settings.batch_prompts(fit)


def sample_and_score(model, tokenizer, examples: Sequence[Example], settings: EvalSettings,
                     scorer: Scorer | None = None,
                     progress: Callable[[int], Any] | None = None) -> list[ProblemResult]:
    """``settings.n`` completions for each example (deterministic per seed), scored by
    ``scorer`` (default: the trainer's verifier, no extra rewards).

    ``progress`` is called with the number of problems finished after each batch.
    """
    s, scorer = settings, scorer or Scorer()
    engine = LocalSampler(model, tokenizer, s.sampling)
    rendered = [render_prompt(tokenizer, ex.prompt, s.system_prompt, s.chat_template)
                for ex in examples]
    per_call = prompts_per_call(tokenizer, rendered, s)
    results: list[ProblemResult] = []
    for start in range(0, len(examples), per_call):
        batch = list(examples[start:start + per_call])
        prompts = rendered[start:start + per_call]
        rollout = engine.generate(prompts, s.n, seed=problem_seeds(s.seed, start, len(batch)))
        repeated = [ex for ex in batch for _ in range(s.n)]
        scores = scorer.score(repeated, rollout.texts, rollout.truncated.tolist())
        for j, ex in enumerate(batch):
            rows = slice(j * s.n, (j + 1) * s.n)
            results.append(ProblemResult(ex, rollout.texts[rows], scores.correct[rows],
                                         scores.reward[rows]))
        if progress is not None:
            progress(len(batch))
    return results


@dataclass
class DatasetReport:
    name: str
    source: str
    results: list[ProblemResult]
    metrics: dict[str, float]
    timeouts: int = 0  # samples whose math-verify check timed out (scored 0)
    errors: int = 0  # samples whose check raised or crashed the checker (scored 0)


def evaluate_datasets(model, tokenizer, datasets: Sequence[EvalDataset],
                      settings: EvalSettings, ks: Sequence[int],
                      progress: bool = True) -> list[DatasetReport]:
    """Sample and score every dataset with one progress bar over all problems."""
    from tqdm.auto import tqdm

    reports = []
    total = sum(len(d.examples) for d in datasets)
    stats = default_verifier().stats  # the scorer's math rewards use this verifier
    with tqdm(total=total, disable=not progress, unit="problem", dynamic_ncols=True) as bar:
        for dataset in datasets:
            bar.set_description(dataset.name)
            timeouts, errors = stats.timeouts, stats.errors
            results = sample_and_score(model, tokenizer, dataset.examples, settings,
                                       progress=bar.update)
            reports.append(DatasetReport(dataset.name, dataset.source, results,
                                         dataset_metrics(results, ks),
                                         stats.timeouts - timeouts, stats.errors - errors))
    return reports


def report_rows(reports: Sequence[DatasetReport]) -> list[tuple[str, int, dict[str, float]]]:
    """(dataset, problems, metrics) rows, then the unweighted average when there are 2+."""
    rows = [(r.name, len(r.results), r.metrics) for r in reports]
    if len(reports) > 1:
        rows.append(("average", sum(len(r.results) for r in reports),
                     average_metrics([r.metrics for r in reports])))
    return rows


def paper_table(reports: Sequence[DatasetReport], n: int,
                ks: Sequence[int]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) shaped like the papers' tables: a column per dataset, then the
    average (with 2+ datasets); a row per metric (fractions), then problems, timeouts and
    errors (counts)."""
    rows = report_rows(reports)
    header = ["metric", *(name for name, _, _ in rows)]
    body: list[list[Any]] = [[key, *(m[key] for _, _, m in rows)]
                             for key in metric_names(n, ks)]
    average = len(rows) > len(reports)
    body.append(["problems", *(problems for _, problems, _ in rows)])
    for label in ("timeouts", "errors"):
        counts = [getattr(r, label) for r in reports]
        body.append([label, *counts, *([sum(counts)] if average else [])])
    return header, body


def eval_table(reports: Sequence[DatasetReport], n: int, ks: Sequence[int]) -> str:
    """The printed Markdown table (``paper_table``), metrics in % with one decimal."""
    header, body = paper_table(reports, n, ks)
    text = [[row[0], *(f"{100 * v:.1f}" if isinstance(v, float) else str(v)
                       for v in row[1:])] for row in body]
    return markdown_table([f"{header[0]} (%)", *header[1:]], text)


def write_eval(out_dir: Path, reports: Sequence[DatasetReport], settings: EvalSettings,
               ks: Sequence[int], model: str, precision: str) -> dict[str, Path]:
    """Write eval.json, eval.csv and eval.md (``paper_table``), and samples.jsonl (every
    completion, its extracted answer, vote label and verdict) under ``out_dir``; returns
    their paths. ``precision`` is what the model sampled at (``maspo.precision``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": model,
        "precision": precision,
        "settings": settings.record(),
        "ks": list(ks),
        "datasets": {r.name: {"source": r.source, "problems": len(r.results),
                              "metrics": r.metrics,
                              "verifier": {"timeouts": r.timeouts, "errors": r.errors}}
                     for r in reports},
        "average": average_metrics([r.metrics for r in reports]),
    }
    paths = {kind: out_dir / name for kind, name in EVAL_FILES.items()}
    paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    write_csv(paths["csv"], *paper_table(reports, settings.n, ks))
    paths["markdown"].write_text(f"Model: {model}\n\n{eval_table(reports, settings.n, ks)}\n")
    with open(paths["samples"], "w") as f:
        for report in reports:
            for index, r in enumerate(report.results):
                f.write(json.dumps({
                    "dataset": report.name, "index": index, "prompt": r.example.prompt,
                    "answer": r.example.answer, "completions": r.completions,
                    "extracted": r.extracted, "votes": r.answers, "correct": r.correct,
                    "rewards": r.rewards,
                }) + "\n")
    return paths
