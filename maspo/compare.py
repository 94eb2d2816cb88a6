"""Objectives x seeds on one model, task and budget: train, evaluate, tabulate, plot.

Each (objective spec, seed) is one ordinary trainer run in
``<out>/runs/<objective-slug>/seed-<s>/``, made from the same base config (defaults <-
``--config`` <- overrides) with only ``loss.name``, ``loss.params``, ``train.seed`` and
``train.output_dir`` changed. The same ``train.seed`` for every objective at a seed index
gives identical prompts and sampling seeds. Runs go seed by seed, one after another or
``--jobs`` at a time (``maspo.grid``), so a comparison stopped early already holds
complete seeds. Restarting the same command picks up where it stopped
(``maspo.run.RunDir.status``): a finished run is skipped, a killed one resumes from its
last checkpoint (``train(..., resume=True)``), a final evaluation cached with the same
sampling settings is kept. An evaluated run keeps no checkpoint and no final model unless
asked (``--keep-checkpoints``, ``--keep-models``). A run the trainer stops (repeated
non-finite updates) is counted as stopped, and one that fails otherwise as failed, in
the table rather than ending the comparison.

The final held-out score of a run is ``maspo eval`` of its final model on its held-out set:
n samples per prompt, Avg@n / Pass@k / Maj@k (``maspo.evaluate``).

Each objective is then set against a baseline objective (default ``grpo``) seed by seed
(``maspo.paired``): the difference in final Avg@n and in the area under the held-out
learning curve (``eval/accuracy`` over steps, divided by the step span: sample
efficiency), each with a 95% Student-t interval over seeds and a verdict.

Each run reports to the trackers of ``train.report_to`` (``maspo.trackers``) as run
``<objective-slug>-seed<s>`` of a project named after ``<out>``, grouped by objective
(``maspo.objective_specs.study_label``), so a tracker's own views set the study's runs
side by side.

Objective specs (``maspo.objective_specs``) are ``name`` or ``name:key=value,...``, e.g.
``maspo:mass_adaptive=false``. When the spec names the base config's objective, its
parameters are merged over the base's ``loss.params``; otherwise they replace them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maspo.config import Config, to_dict, validate
from maspo.errors import UserError
from maspo.evaluate import EvalSettings, heldout_seed, metric_names, verdict_metrics
from maspo.grid import RunTask, run_grid
from maspo.objective_specs import Variant, study_label
from maspo.paired import EQUIVALENT, curve_area, paired_difference, pairing, pairs_for_half_width
from maspo.paths import write_atomic
from maspo.provenance import maspo_commit
from maspo.run import RunDir, RunSummary
from maspo.step_log import TRUST_RANGE
from maspo.tables import format_mean_std, markdown_table, mean_std, write_csv

RECORD_FILE = "compare.yaml"  # the comparison's base config, objectives and seeds
STEP0_FOLDER = "step0"  # seed-<s>.json: the evaluation before training, one per seed


def run_config(base: Config, variant: Variant, seed: int, run_dir: Path) -> Config:
    """The base config with this run's objective, seed and directory, validated."""
    params = dict(variant.params)
    if variant.name == base.loss.name:
        params = {**base.loss.params, **params}
    config = dataclasses.replace(
        base, loss=dataclasses.replace(base.loss, name=variant.name, params=params),
        train=dataclasses.replace(base.train, seed=seed, output_dir=str(run_dir)))
    try:
        validate(config)
    except UserError as err:
        raise UserError(f"objective spec {variant.spec!r}: {err}") from None
    return config


# ---------------------------------------------------------------------------------------
# Running the grid.


@dataclass
class RunResult:
    variant: Variant
    seed: int
    run_dir: Path
    summary: RunSummary | None  # the trainer's summary (None unless finished)
    correct: list[list[bool]]  # final held-out verdicts, (problems, n) ([] unless finished)
    answers: list[list[str | None]]  # their extracted answers
    stopped: str | None = None  # why the trainer stopped the run (non-finite updates)
    failed: str | None = None  # why the run failed otherwise (retried on the next call)

    @property
    def finished(self) -> bool:
        return self.stopped is None and self.failed is None


def _record(out: Path, base: Config, variants: Sequence[Variant], seeds: Sequence[int],
            settings: EvalSettings) -> None:
    """Write compare.yaml; a directory holding another comparison is an error."""
    path = out / RECORD_FILE
    record = {"objectives": [v.spec for v in variants], "seeds": list(seeds),
              "final_eval": {k: v for k, v in settings.record().items()
                             if k != "seed"},  # its seed is each run's seed
              "base_config": to_dict(base)}
    if path.is_file():
        saved = (yaml.safe_load(path.read_text()) or {}).get("base_config", {})
        for section, values in record["base_config"].items():
            for key, value in values.items():
                if saved.get(section, {}).get(key) != value:
                    raise UserError(
                        f"{str(out)!r} holds a comparison with a different base config "
                        f"({section}.{key} was {saved.get(section, {}).get(key)!r}, now "
                        f"{value!r}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(record, sort_keys=False))


def run_comparison(base: Config, variants: Sequence[Variant], seeds: Sequence[int], out: Path,
                   settings: EvalSettings, *, progress: bool = True, device: str = "cpu",
                   jobs: int = 1, keep_checkpoints: bool = False, keep_models: bool = False,
                   log: Callable[[str], Any] = print) -> list[RunResult]:
    """Train and evaluate every (variant, seed) run under ``out`` (resumable, see above),
    ``jobs`` runs at a time (``maspo.grid``)."""
    out = Path(out)
    grid = [(v, s) for s in seeds for v in variants]
    tasks = [RunTask(f"{v.spec} seed {s}",
                     run_config(base, v, s, out / "runs" / v.slug / f"seed-{s}"),
                     # the trainer's held-out seed: with its n, its last evaluation is this
                     dataclasses.replace(settings, seed=heldout_seed(s)), device,
                     keep_checkpoints=keep_checkpoints, keep_model=keep_models,
                     tracking=study_label(out, v.slug, s),
                     step0_cache=out / STEP0_FOLDER / f"seed-{s}.json")
             for v, s in grid]  # every spec validated before any training starts
    _record(out, base, variants, seeds, settings)
    outcomes = run_grid(tasks, jobs=jobs, progress=progress, log=log)
    results = []
    for (variant, seed), task, outcome in zip(grid, tasks, outcomes, strict=True):
        final = outcome.final_eval or {"correct": [], "answers": []}
        results.append(RunResult(variant, seed, task.run.root, outcome.summary,
                                 final["correct"], final["answers"], stopped=outcome.stopped,
                                 failed=outcome.failed))
    return results


# ---------------------------------------------------------------------------------------
# Adding seeds until the intervals are narrow enough.


@dataclass(frozen=True)
class StopRule:
    """Keep adding seeds until every paired row's 95% half-width of each named metric
    (``final``, ``auc``) is at most its target, or ``max_seeds`` seeds are in."""

    widths: dict[str, float]  # e.g. {"auc": 0.03, "final": 0.05}
    max_seeds: int

    def record(self) -> dict[str, Any]:
        return {"until": dict(self.widths), "max_seeds": self.max_seeds}


def parse_until(text: str, max_seeds: int | None, seeds: Sequence[int]) -> StopRule:
    """``"auc=0.03,final=0.05"`` and ``--max-seeds`` -> StopRule (checked)."""
    widths: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in PAIRED_METRICS:
            raise UserError(f"--until item {item!r}: name one of {', '.join(PAIRED_METRICS)}")
        try:
            widths[name] = float(value)
        except ValueError:
            raise UserError(f"--until item {item!r} needs a half-width, e.g. "
                            f"{name}=0.03") from None
        if not widths[name] > 0:
            raise UserError(f"--until item {item!r}: the half-width must be > 0")
    if not widths:
        raise UserError("--until names no half-width (e.g. --until auc=0.03,final=0.05)")
    if max_seeds is None:
        raise UserError("--until needs --max-seeds, the most seeds the comparison may add")
    if max_seeds < len(seeds):
        raise UserError(f"--max-seeds {max_seeds} is fewer than the {len(seeds)} --seeds")
    return StopRule(widths, max_seeds)


def widths_left(paired: Sequence[dict[str, Any]], rule: StopRule) -> list[str]:
    """The paired (objective, metric) half-widths still above their targets, as text
    (an interval not yet computable counts as too wide)."""
    left = []
    for row in paired:
        for metric, target in rule.widths.items():
            width = row[metric]["half_width"]
            if math.isnan(width) or width > target:
                needed = pairs_for_half_width(row[metric]["sd_paired"], target)
                left.append(f"{row['objective']} {metric} ±{width:.3f} (> {target:g}"
                            + ("" if needed is None else
                               f"; about {needed} pairs at this spread") + ")")
    return left


def run_until(base: Config, variants: Sequence[Variant], seeds: Sequence[int], out: Path,
              settings: EvalSettings, rule: StopRule, baseline: str,
              write: Callable[[list[RunResult], list[int]], Any],
              log: Callable[[str], Any] = print, **kwargs: Any) -> list[RunResult]:
    """``run_comparison`` on ``seeds``, then new seeds (the next integers above the
    largest), ``jobs`` at a time so parallel runs need not share a seed, until ``rule`` is
    met or ``rule.max_seeds`` are in; ``write(results, seeds)`` after each round, so a
    comparison stopped at any point has its results written. Finished runs are never
    trained again: the same command resumes, here or from a copy of ``out``."""
    seeds, step = list(seeds), max(1, kwargs.get("jobs", 1))
    while True:
        results = run_comparison(base, variants, seeds, out, settings, log=log, **kwargs)
        write(results, seeds)
        runs = summarize(results, settings.n, [1], None)
        left = widths_left(paired_rows(runs, baseline, f"avg@{settings.n}"), rule)
        if not left:
            log(f"stopping rule met at {len(seeds)} seeds")
            return results
        if len(seeds) >= rule.max_seeds:
            log(f"--max-seeds {rule.max_seeds} reached; still too wide: {'; '.join(left)}")
            return results
        added = list(range(max(seeds) + 1, max(seeds) + 1 +
                           min(step, rule.max_seeds - len(seeds))))
        log(f"{len(seeds)} seeds: {'; '.join(left)}; adding seed "
            f"{', '.join(map(str, added))}")
        seeds += added


# ---------------------------------------------------------------------------------------
# Results: table (Markdown, CSV, JSON) and figures.


def steps_to_target(records: Sequence[dict[str, Any]], target: float) -> int | None:
    """First step whose logged held-out accuracy (``eval/accuracy``) is >= target."""
    for record in records:
        if record.get("eval/accuracy", -1.0) >= target:
            return int(record["step"])
    return None


def summarize(results: Sequence[RunResult], n: int, ks: Sequence[int],
              target: float | None) -> list[dict[str, Any]]:
    """One dict per run: objective, seed, final metrics (None unless finished), the
    held-out accuracy at step 0 (the trainer's evaluation before training) and the gain of
    the final Avg@n over it, steps to target, train time."""
    rows = []
    for r in results:
        metrics = (verdict_metrics(r.correct, r.answers, ks) if r.finished else
                   dict.fromkeys(metric_names(n, ks)))
        run = RunDir(r.run_dir)
        logged = (r.finished or target is not None) and run.metrics.is_file()
        records = run.read_metrics() if logged else []  # (a failed run may have none)
        step0 = r.summary.eval_accuracy_before if r.finished else None
        final = metrics[f"avg@{n}"]
        row = {"objective": r.variant.spec, "seed": r.seed, "run_dir": str(r.run_dir),
               "stopped": r.stopped, "failed": r.failed, "step0": step0, **metrics,
               "gain": None if step0 is None or final is None else final - step0,
               "train_time_s": r.summary.train_time_s if r.summary else None,
               "train_cpu_s": r.summary.train_cpu_s if r.summary else None,
               "maspo_commit": r.summary.maspo_commit if r.summary else None,
               "auc": learning_curve_area(records) if r.finished else None,
               **trust_region_use(records if r.finished else [])}
        if target is not None:
            row["steps_to_target"] = steps_to_target(records, target)
        rows.append(row)
    return rows


def learning_curve_area(records: Sequence[dict[str, Any]]) -> float | None:
    """Mean held-out accuracy over training: area under ``eval/accuracy`` / step span."""
    from maspo.plots import series

    steps, values = series(records, "eval/accuracy")
    return curve_area(steps, values) if steps else None


def trust_region_use(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """How much the run exercised the trust region: over its steps, the mean and the
    lowest share of updated tokens (updates after each step's first) whose ratio left
    ``maspo.step_log.TRUST_RANGE`` (the logged ``ratio/outside_trust``)."""
    from maspo.plots import series

    values = series(records, "ratio/outside_trust")[1]
    if not values:
        return {"outside_trust_mean": None, "outside_trust_min": None}
    return {"outside_trust_mean": sum(values) / len(values),
            "outside_trust_min": min(values)}


PAIRED_METRICS = ("final", "auc")  # final Avg@n; area under the held-out learning curve


def paired_rows(runs: Sequence[dict[str, Any]], baseline: str, final_key: str,
                margin: float | None = None) -> list[dict[str, Any]]:
    """Each objective but the baseline against it, paired by seed (finished runs only);
    ``margin``: the equivalence margin of the verdicts (``maspo.paired.verdict_of``)."""
    by_obj: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        if run["stopped"] is None and run.get("failed") is None:
            by_obj.setdefault(run["objective"], {})[run["seed"]] = run
    base = by_obj.get(baseline, {})
    out = []
    for objective in dict.fromkeys(run["objective"] for run in runs):
        if objective == baseline:
            continue
        own = by_obj.get(objective, {})
        seeds = [s for s in own if s in base]
        row: dict[str, Any] = {"objective": objective, "baseline": baseline,
                               "seeds": seeds}
        for name, key in (("final", final_key), ("auc", "auc")):
            pairs = [(own[s][key], base[s][key]) for s in seeds
                     if own[s][key] is not None and base[s][key] is not None]
            arms = [a for a, _ in pairs], [b for _, b in pairs]
            diff = paired_difference(*arms, margin=margin)
            row[name] = {**dataclasses.asdict(diff), "half_width": diff.half_width,
                         **dataclasses.asdict(pairing(*arms))}
            row[f"{name}_shown"] = diff.shown()
        out.append(row)
    return out


def _shared_step0(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Evaluations before training read back from a seed's shared one, and the CPU time
    the measured ones took (each read-back one saved about that much)."""
    shared, cpu = 0, []
    for run in runs:
        path = RunDir(Path(run["run_dir"])).metrics
        first = json.loads(path.read_text().split("\n", 1)[0]) if path.is_file() else {}
        if first.get("eval/shared"):
            shared += 1
        elif "time/eval_cpu" in first:
            cpu.append(first["time/eval_cpu"])
    return {"shared": shared, "measured": len(cpu),
            "mean_eval_cpu_s": sum(cpu) / len(cpu) if cpu else None}


def _run_commits(runs: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many finished runs each maspo commit trained (``unrecorded``: runs from before
    summaries recorded it); the results may be written by a later commit."""
    counts: dict[str, int] = {}
    for run in runs:
        if run["train_time_s"] is not None:  # finished (it wrote its summary)
            commit = run.get("maspo_commit") or "unrecorded"
            counts[commit] = counts.get(commit, 0) + 1
    return counts


def _shown_p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.2g}"


def _shown_detectable(delta: float) -> str:
    return "-" if math.isnan(delta) else f"±{delta:.3f}"


def _values(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows if r[key] is not None]


def write_results(out: Path, results: Sequence[RunResult], n: int, ks: Sequence[int],
                  target: float | None, baseline: str | None = "grpo",
                  stop: StopRule | None = None, margin: float | None = None
                  ) -> dict[str, Path]:
    """results.md (mean ± std over seeds, then each objective minus ``baseline`` paired by
    seed with 95% CIs and verdicts), results.csv (mean and std columns), paired.csv,
    results.json (every run, the paired rows) and the figures; returns the paths.

    Stopped runs (non-finite updates) have no final scores; they are counted per objective.
    """
    from maspo.plots import plot_comparison

    out = Path(out)
    runs = summarize(results, n, ks, target)
    by_obj: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_obj.setdefault(run["objective"], []).append(run)
    paired = [] if baseline is None else paired_rows(runs, baseline, f"avg@{n}", margin)
    for row in paired if stop is not None else ():  # what the stopping rule still needs
        for metric, width in stop.widths.items():
            row[metric]["pairs_needed"] = pairs_for_half_width(row[metric]["sd_paired"],
                                                               width)
    paths = {"markdown": out / "results.md", "csv": out / "results.csv",
             "paired_csv": out / "paired.csv", "json": out / "results.json"}
    md_header, md_rows, csv_header, csv_rows = _objective_rows(by_obj, n, ks, target)
    low, high = TRUST_RANGE
    note = (f"Final held-out scores: {n} samples per prompt, mean ± std over seeds. Step 0: "
            "the held-out accuracy before training (train.eval_samples per prompt); min "
            f"gain: the smallest final avg@{n} minus step 0 over the seeds. Outside "
            f"[{low:g}, {high:g}]: the share of updated tokens (after each step's first "
            "update) whose ratio pi/pi_old left the trust region, mean over steps and "
            "seeds, and in brackets the lowest step of any seed.")
    if target is not None:
        note += (f" Steps to {target:g}: first logged eval/accuracy >= {target:g}, over the "
                 "seeds that reached it (reached/seeds).")
    text = f"{markdown_table(md_header, md_rows)}\n\n{note}\n"
    if paired:
        text += f"\n{_paired_markdown(paired, n, baseline, margin, stop)}\n"
    paths["markdown"].write_text(text)
    write_csv(paths["csv"], csv_header, csv_rows)
    fields = ("n", "mean", "low", "high", "p", "verdict", "detectable", "half_width", "r",
              "sd_paired", "sd_unpaired", "welch_low", "welch_high")
    write_csv(paths["paired_csv"], ["objective", "baseline"] + [
        f"{m}_{f}" for m in PAIRED_METRICS for f in fields],
        [[row["objective"], row["baseline"]] + [row[m][f] for m in PAIRED_METRICS
                                                for f in fields] for row in paired])
    paths["json"].write_text(json.dumps({
        "maspo_commit": maspo_commit(),
        "run_commits": _run_commits(runs), "n": n, "ks": list(ks), "target": target,
        "baseline": baseline, "stop": None if stop is None else stop.record(),
        "equivalence_margin": margin,
        "step0_shared": _shared_step0(runs), "runs": runs, "paired": paired},
        indent=1) + "\n")
    groups = {o: [Path(r["run_dir"]) for r in rows if r["failed"] is None]
              for o, rows in by_obj.items()}  # (a failed run may have logged nothing)
    groups = {o: dirs for o, dirs in groups.items() if dirs}
    paths.update(plot_comparison(groups, out / "figures"))
    return paths


def _objective_rows(by_obj: dict[str, list[dict[str, Any]]], n: int, ks: Sequence[int],
                    target: float | None) -> tuple[list[str], list[list[str]], list[str],
                                                   list[list[Any]]]:
    """(Markdown header, rows, CSV header, rows): one row per objective over its seeds."""
    metrics = metric_names(n, ks)
    shown = [m for m in metrics if not m.startswith("maj")]  # Maj@k: CSV and JSON only
    low, high = TRUST_RANGE
    header = ["objective", "seeds", "step 0", *shown, "min gain",
              f"outside [{low:g}, {high:g}]: mean (lowest step)"]
    csv_header = ["objective", "seeds", "stopped", "failed"]
    for m in [*metrics, "train_time_s"] + (["steps_to_target"] if target is not None else []):
        csv_header += [f"{m}_mean", f"{m}_std"]
    if target is not None:
        header.append(f"steps to {target:g}")
        csv_header.append("reached_target")
    header.append("train time (s)")
    csv_header += ["step0_mean", "step0_std", "gain_min", "outside_trust_mean",
                   "outside_trust_min"]
    md_rows, csv_rows = [], []
    for objective, rows in by_obj.items():
        stopped = sum(r["stopped"] is not None for r in rows)
        failed = sum(r["failed"] is not None for r in rows)
        extra = [f"+{k} {what}" for k, what in ((stopped, "stopped"), (failed, "failed")) if k]
        seeds = f"{len(rows) - stopped - failed}" + (f" ({', '.join(extra)})" if extra else "")
        gains = _values(rows, "gain")
        md = [objective, seeds, format_mean_std(_values(rows, "step0"))]
        md += [format_mean_std(_values(rows, m)) for m in shown]
        md.append(f"{min(gains):+.3f}" if gains else "-")
        used = _values(rows, "outside_trust_mean")
        trust = (sum(used) / len(used), min(_values(rows, "outside_trust_min"))) if used else (
            None, None)
        md.append("-" if trust[0] is None else f"{trust[0]:.3f} ({trust[1]:.3f})")
        line: list[Any] = [objective, len(rows) - stopped - failed, stopped, failed]
        for m in [*metrics, "train_time_s"]:
            line += mean_std(_values(rows, m))
        if target is not None:
            reached = _values(rows, "steps_to_target")
            md.append(f"{format_mean_std(reached, 1)} ({len(reached)}/{len(rows)})")
            line += [*mean_std(reached), len(reached)]
        md.append(format_mean_std(_values(rows, "train_time_s"), 1))
        line += [*mean_std(_values(rows, "step0")), min(gains) if gains else None, *trust]
        md_rows.append(md)
        csv_rows.append(line)
    return header, md_rows, csv_header, csv_rows


def _shown_value(value: float, signed: bool = False) -> str:
    return "-" if value is None or math.isnan(value) else (
        f"{value:+.3f}" if signed else f"{value:.3f}")


def _paired_markdown(paired: Sequence[dict[str, Any]], n: int, baseline: str,
                     margin: float | None = None, stop: StopRule | None = None) -> str:
    """The paired tables of results.md (final Avg@n, then curve area) and the note."""
    tables = []
    for m, title in (("final", f"Δ avg@{n}"), ("auc", "Δ curve area")):
        header = ["objective", "paired seeds", f"{title} [95% CI]", "p", "verdict",
                  "detectable", "r", "sd paired", "sd unpaired", "Welch [95% CI]"]
        target = None if stop is None else stop.widths.get(m)
        if target is not None:
            header.append(f"pairs for ±{target:g}")
        rows = []
        for row in paired:
            d = row[m]
            welch = ("-" if math.isnan(d["welch_low"]) else
                     f"[{d['welch_low']:+.3f}, {d['welch_high']:+.3f}]")
            verdict = d["verdict"] + (f" (±{margin:g})" if d["verdict"] == EQUIVALENT else "")
            rows.append([row["objective"], str(len(row["seeds"])), row[f"{m}_shown"],
                         _shown_p(d["p"]), verdict, _shown_detectable(d["detectable"]),
                         _shown_value(d["r"], signed=True), _shown_value(d["sd_paired"]),
                         _shown_value(d["sd_unpaired"]), welch])
            if target is not None:
                rows[-1].append("-" if d["pairs_needed"] is None else str(d["pairs_needed"]))
        tables.append(markdown_table(header, rows))
    note = (f"Each objective minus {baseline}, paired by seed: mean difference with a "
            "95% Student-t interval over seeds, p the paired t-test's two-sided p-value; "
            "better / worse only when the interval excludes 0"
            + ("" if margin is None else f"; equivalent when it lies inside ±{margin:g}")
            + ". Curve area: mean held-out accuracy over training (area under "
            "the eval/accuracy curve / steps), i.e. sample efficiency. Detectable: the "
            "smallest true difference these seeds would show at 80% power (5% level), "
            "from the pairs' spread (maspo.paired). r: the correlation of the two arms "
            "over the seeds; sd paired: of the differences; sd unpaired: what a difference "
            "of two unpaired runs would have, sqrt(sd_a^2 + sd_b^2). Pairing pays when "
            "r > 0 (sd paired < sd unpaired); Welch: the unpaired interval, the one to "
            "read when it does not."
            + ("" if stop is None else " Pairs for ±w: the fewest pairs whose interval "
               "would be ±w wide if the paired sd stayed as it is (the stopping rule, "
               f"--until; at most {stop.max_seeds} seeds)."))
    return "\n\n".join(tables) + f"\n\n{note}"
