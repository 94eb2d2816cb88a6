"""`maspo` command line: train | config | eval | compare | probe | plot | objectives | demo.

Errors a user can cause print one sentence and exit with code 2, before any model loads
where they can be known then (config errors before torch is even imported) and before
anything is written. Options may stand anywhere among the ``section.key=value`` overrides.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from pathlib import Path

from maspo import __version__
from maspo.errors import EXIT_USER_ERROR, UserError
from maspo.paths import writing

EXIT_TRAINING_STOPPED = 1
DEFAULT_EVAL_N = 8  # samples per problem when --n is not given (sampled decoding)
DEFAULT_BASELINE = "grpo"  # what `maspo compare` sets every other objective against
SHOWN_SAMPLES = 4  # completions of the last step printed at the end of `maspo train`


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _finite(text: str) -> float:
    """argparse type: a finite float (inf and nan are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _config(args: argparse.Namespace):
    """The config `maspo train` would run: a preset + overrides, or a run's saved config."""
    from maspo.config import load_config, override_value
    from maspo.run import resume_config

    if not args.resume:
        return load_config(args.config, args.overrides)
    if args.config is not None:
        raise UserError("--resume continues a run with the config it saved; drop --config")
    run_dir = override_value(args.overrides, "train.output_dir")
    if not run_dir:
        raise UserError("--resume needs the run directory: add train.output_dir=<run folder>")
    return resume_config(str(run_dir), args.overrides)


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    from maspo.config import resolved

    print(yaml.safe_dump(resolved(_config(args)), sort_keys=False).rstrip())
    return 0


def _train(args: argparse.Namespace) -> int:
    from maspo.data.splits import fetch_sources
    from maspo.model_files import check_model_spec
    from maspo.paths import check_output_dir
    from maspo.run import RunDir, check_run_dir
    from maspo.trackers import check_installed

    config = _config(args)  # every config error, before torch is imported
    check_installed(config.train.report_to)
    if args.resume:  # the run folder must take writes again
        check_run_dir(config, config.train.output_dir, resume=True)
    else:
        check_output_dir(config.train.output_dir or "runs", "train.output_dir")
    fetch_sources(config.data)  # hub data sets, then the model: a miss before a download
    check_model_spec(config.model.path)

    from maspo.trainer import train

    summary = train(config, resume=args.resume, progress=not args.no_progress)
    run = RunDir(Path(summary["run_dir"]))
    samples = run.read_samples()
    last = [s for s in samples if s["step"] == samples[-1]["step"]] if samples else []
    if last:
        print(f"\ncompletions of step {last[0]['step']} (all saved in {run.samples.name}):")
    for sample in last[:SHOWN_SAMPLES]:
        prompt = sample["prompt"] if isinstance(sample["prompt"], str) else (
            sample["prompt"][-1]["content"])
        cut = ", cut at the length cap" if sample["truncated"] else ""
        print(f"  {prompt!r}\n    -> {sample['completion']!r}  "
              f"(reward {sample['reward']:g}{cut})")
    before, after = summary["eval_accuracy_before"], summary["eval_accuracy_after"]
    n = summary["eval_prompts"] * summary["eval_samples_per_prompt"]
    print(f"\nheld-out accuracy ({summary['eval_prompts']} prompts x "
          f"{summary['eval_samples_per_prompt']} samples = {n}):")
    if before is not None:
        print(f"  before training: {before:.3f}")
    print(f"  after {summary['steps']} steps:  {after:.3f}"
          + (f"   ({after - before:+.3f})" if before is not None else ""))
    print(f"run directory: {run.root} ({run.metrics.name}, {run.tensorboard.name}/, "
          f"{run.checkpoints.name}/)")
    print(f"learning curves: {run.curves}")
    return 0


def _check_eval_out(out: Path) -> Path:
    """--out must be a folder that holds no earlier evaluation (nothing is overwritten)."""
    from maspo.paths import EVAL_FILES, check_output_dir

    check_output_dir(out, "--out")
    for name in EVAL_FILES.values():
        if (out / name).exists():
            raise UserError(f"--out {str(out)!r} already holds an evaluation ({name}); choose "
                            "another folder")
    return out


def _eval(args: argparse.Namespace) -> int:
    import time

    from maspo.devices import check_device_name

    out = _check_eval_out(Path(args.out or f"results/eval-{time.strftime('%Y%m%d-%H%M%S')}"))
    check_device_name(args.device or "auto", "--device")
    for flag, value, low in (("--test-size", args.test_size, 1),
                             ("--data-seed", args.data_seed, 0)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")

    from transformers.utils import logging as hf_logging

    from maspo.devices import resolve_device
    from maspo.eval_specs import RUN_HELDOUT, load_eval_model, locate_model, resolve_datasets
    from maspo.evaluate import eval_settings, eval_table, evaluate_datasets, parse_ks, write_eval
    from maspo.model_files import check_model_spec
    from maspo.precision import autocast, prepare_model, resolve_precision

    source = locate_model(args.model)  # configs only: every input error before loading
    run = source.run_config
    n = args.n if args.n is not None else (1 if args.greedy else DEFAULT_EVAL_N)
    settings = eval_settings(
        run, n=n, seed=args.seed, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_p=args.top_p, greedy=args.greedy,
        prompts_per_batch=args.batch_size, system_prompt=args.system_prompt,
        chat_template=False if args.no_chat_template else None)
    ks = parse_ks(args.k or ("1,n" if n > 1 else "1"), n)
    if not args.data and run is None:
        raise UserError("pass --data (a built-in task, a JSONL/Parquet/dataset path or a hub "
                        "data set id) to evaluate a model that is not a run")
    fields = {k: v for k, v in (("prompt", args.prompt_field),
                                ("answer", args.answer_field)) if v}
    datasets = resolve_datasets(args.data or [RUN_HELDOUT], fields=fields, run=run,
                                seed=args.data_seed, size=args.test_size, limit=args.limit,
                                answer_format=args.answer_format,
                                answer_check=args.answer_check)
    if source.model_dir is not None:  # after the data: a miss there before a model download
        check_model_spec(source.model_dir)  # missing, partial or truncated files
    device = str(resolve_device(args.device or "auto", "--device"))
    # a run evaluates at its own precision unless told otherwise; a plain model in fp32
    precision = resolve_precision(args.precision or (run.train.precision if run else "fp32"),
                                  device)
    hf_logging.disable_progress_bar()
    model, tokenizer = load_eval_model(source, device=device, dtype=_dtype(args.dtype))
    prepare_model(model, precision)
    with autocast(precision, device):
        reports = evaluate_datasets(model, tokenizer, datasets, settings, ks,
                                    progress=not args.no_progress)
    sampling = settings.sampling
    mode = "greedy" if sampling.greedy else (f"temperature {sampling.temperature}, "
                                            f"top-p {sampling.top_p}")
    print(f"\n{source.describe()}: {n} sample{'s' * (n > 1)} per problem ({mode}, "
          f"{precision})\n")
    print(eval_table(reports, n, ks))  # first: a failed write below loses no result
    _check_eval_out(out)  # again: another process may have written there meanwhile
    with writing(f"the evaluation to {str(out)!r}", "the scores are printed above; free "
                 "some space or choose another --out"):
        paths = write_eval(out, reports, settings, ks, source.describe(), precision)
    print(f"\nwrote {paths['json']}, {paths['csv'].name}, {paths['markdown'].name}, "
          f"{paths['samples'].name}")
    return 0


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


def _objectives(args: argparse.Namespace) -> int:
    from maspo.weights_report import plot_curves, profile_table

    print(profile_table())
    path = plot_curves(Path(args.out))
    print(f"wrote {path}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from matplotlib.backend_bases import FigureCanvasBase

    from maspo.paths import check_output_file
    from maspo.plots import group_runs, plot_objective_activity, plot_run, read_metrics

    out = check_output_file(args.out, "--out")
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"--out {str(out)!r} must end in an image type matplotlib writes "
                        f"(.png, .pdf, .svg, ...), not {out.suffix or 'nothing'!r}")
    check_output_file(out.with_name(f"{out.stem}-objective{out.suffix}"), "--out")
    runs = [Path(d) for d in args.runs]
    for run in runs:
        read_metrics(run)  # every run readable before anything is drawn
    out = plot_run(runs, out)
    activity = plot_objective_activity(group_runs(runs),
                                       out.with_name(f"{out.stem}-objective{out.suffix}"))
    print(f"wrote {out} and {activity}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from maspo.compare import (
        check_overrides,
        find_baseline,
        parse_seeds,
        parse_variants,
        run_comparison,
        write_results,
    )
    from maspo.config import load_config
    from maspo.evaluate import eval_settings, parse_ks
    from maspo.trackers import check_installed

    check_overrides(args.overrides)
    base = load_config(args.config, args.overrides)
    check_installed(base.train.report_to)
    variants = parse_variants(args.objectives)
    seeds = parse_seeds(args.seeds)
    if args.eval_temperature is not None and args.eval_temperature <= 0 and not args.greedy:
        raise UserError(f"--eval-temperature must be > 0, got {args.eval_temperature} (use "
                        "--greedy for argmax decoding)")
    baseline = None  # the default grpo only when it is compared; a named one must be
    if args.baseline is not None or any(v.spec == DEFAULT_BASELINE for v in variants):
        baseline = find_baseline(variants, args.baseline or DEFAULT_BASELINE).spec
    n = args.n if args.n is not None else (1 if args.greedy else DEFAULT_EVAL_N)
    settings = eval_settings(base, n=n, temperature=args.eval_temperature, greedy=args.greedy,
                             prompts_per_batch=args.batch_size)
    ks = parse_ks(args.k or ("1,n" if n > 1 else "1"), n)
    if args.target is not None and not 0 <= args.target <= 1:
        raise UserError(f"--target is an accuracy in [0, 1], got {args.target}")
    from maspo.data.splits import fetch_sources
    from maspo.devices import resolve_device
    from maspo.model_files import check_model_spec
    from maspo.paths import check_output_dir

    out = check_output_dir(args.out, "--out")
    fetch_sources(base.data)  # hub data sets and model, before anything is written
    check_model_spec(base.model.path)
    device = str(resolve_device(args.device or "auto", "--device"))
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    results = run_comparison(base, variants, seeds, out, settings,
                             progress=not args.no_progress, device=device, jobs=args.jobs,
                             keep_checkpoints=args.keep_checkpoints,
                             keep_models=args.keep_models)
    with writing(f"the results to {str(out)!r}", "free some space and run the same command "
                 "again (finished runs are not trained again)"):
        paths = write_results(out, results, n, ks, args.target, baseline)
    print()
    print(paths["markdown"].read_text().rstrip())
    if baseline is None:
        print(f"\n(no paired comparison: {DEFAULT_BASELINE} is not among the objectives; "
              "pass --baseline SPEC)")
    print(f"\nwrote {paths['markdown']}, {paths['csv'].name}, {paths['paired_csv'].name}, "
          f"{paths['json'].name}, figures/{paths['curves'].name}, "
          f"figures/{paths['activity'].name}, figures/{paths['ratios'].name}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    import dataclasses
    import shlex
    import tempfile

    from maspo.compare import check_overrides, find_baseline, parse_seeds, parse_variants
    from maspo.config import load_config
    from maspo.paths import check_output_dir
    from maspo.trackers import check_installed

    check_overrides(args.overrides)
    base = load_config(args.config, args.overrides)
    check_installed(base.train.report_to)
    variants = parse_variants(args.objectives)
    seeds = parse_seeds(args.seeds)
    baseline = find_baseline(variants, args.baseline).spec
    if args.entropy_steps < 0:
        raise UserError(f"--entropy-steps must be >= 0, got {args.entropy_steps}")
    out = check_output_dir(args.out, "--out")

    from transformers.utils import logging as hf_logging

    from maspo.config import to_dict
    from maspo.probes import Contrast, maspo_commit, parse_claim, run_probes, write_probes

    claims = [parse_claim(text, variants) for text in args.claim]
    contrasts = list(dict.fromkeys(c.contrast for c in claims)) or [
        Contrast(v.spec, baseline) for v in variants if v.spec != baseline]

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as work:
        per_seed = run_probes(base, variants, seeds, Path(work), args.entropy_steps,
                              cache=out / "seeds", study=out)
    record = {"command": "maspo " + shlex.join(args.argv), "commit": maspo_commit(),
              "config": to_dict(base), "objectives": [v.spec for v in variants],
              "entropy_steps": args.entropy_steps,
              "contrasts": [dataclasses.asdict(c) for c in contrasts],
              "claims": [dataclasses.asdict(c) for c in claims], "seeds": per_seed}
    with writing(f"the probes to {str(out)!r}", "free some space and run the same command "
                 "again (finished seeds are not probed again)"):
        paths = write_probes(out, record)
    print(paths["markdown"].read_text().rstrip())
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    """What `train` and `config` share: a preset, --resume and the overrides."""
    from maspo.config import preset_names
    from maspo.run import RESUMABLE_KEYS

    parser.add_argument("--config", metavar="PRESET", help="a preset shipped with maspo ("
                        f"{', '.join(preset_names())}) or a YAML file path")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.output_dir from its newest intact "
                        "checkpoint, with its saved config; only "
                        f"{', '.join(RESUMABLE_KEYS)} may be overridden")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")


def _keys_epilog() -> str:
    from maspo.config import describe_keys

    return ("config keys (section.key=default; set with section.key=value, lists as [a,b];\n"
            "loss.params are the objective's own: `maspo config` shows them all):\n"
            + "\n".join(describe_keys()))


def _add_train(sub) -> None:
    """`maspo train`: defaults <- preset <- overrides."""
    train = sub.add_parser("train", help="train a policy with an RLVR objective",
                           description=textwrap.fill(
                               "Train with defaults <- --config preset <- overrides like "
                               "loss.name=grpo rollout.group_size=8. Options may stand "
                               "anywhere among the overrides."),
                           epilog=_keys_epilog(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_arguments(train)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)


def _add_config(sub) -> None:
    """`maspo config`: the resolved config `maspo train` would run."""
    show = sub.add_parser("config", help="print the fully resolved config `maspo train` would "
                          "run with the same arguments (objective defaults included)",
                          description=textwrap.fill(
                              "Print, as YAML, the config `maspo train` would run with the "
                              "same arguments: defaults <- preset <- overrides (or a run's "
                              "saved config with --resume), every objective parameter and "
                              "the aggregation mode filled in."),
                          epilog=_keys_epilog(),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_arguments(show)
    show.set_defaults(func=_show_config)


def _add_demo(sub) -> None:
    """`maspo demo`: the embedded default."""
    demo = sub.add_parser("demo", help="the embedded default: `maspo train` with no arguments")
    demo.set_defaults(func=_train, config=None, resume=False, no_progress=False, overrides=[])


def _add_eval(sub) -> None:
    """`maspo eval`: Avg@n / Pass@k / Maj@k of a model, run or checkpoint."""
    from maspo.config import EVAL_MAX_NEW_TOKENS, PRECISIONS

    ev = sub.add_parser(
        "eval", help="Avg@n / Pass@k / Maj@k of a model, run or checkpoint on datasets",
        description="Sample n completions per problem, score them with the trainer's "
        "verifier and report Avg@n, unbiased Pass@k and Maj@k per dataset and averaged.")
    ev.add_argument("model", metavar="MODEL_OR_RUN",
                    help="HF model dir, hub id org/name[@revision], 'default', a run dir "
                    "or <run>/checkpoints/step-N")
    ev.add_argument("--data", action="append", metavar="SPEC",
                    help="built-in task (arithmetic, countdown[:key=value,...]), a JSONL/JSON/"
                    "Parquet file or save_to_disk folder with problem/answer fields, a hub "
                    "data set id org/name[@revision][:config=C][,split=S] (split test by "
                    "default), or 'heldout' (a run's held-out set, the default for a run); "
                    "repeatable")
    ev.add_argument("--n", type=int, help=f"samples per problem (default {DEFAULT_EVAL_N}; "
                    "1 with --greedy)")
    ev.add_argument("--k", help="comma-separated k values for Pass@k / Maj@k, each <= n; "
                    "'n' means n (default 1,n)")
    ev.add_argument("--temperature", type=_finite,
                    help="sampling temperature (default: a run's train.eval_temperature, else 1)")
    ev.add_argument("--top-p", type=_finite, help="nucleus sampling (default: a run's "
                    "rollout.top_p, else 1)")
    ev.add_argument("--greedy", action="store_true", help="argmax decoding (needs --n 1)")
    ev.add_argument("--max-new-tokens", type=int, help="completion cap (default: the run's, "
                    f"else {EVAL_MAX_NEW_TOKENS})")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed")
    ev.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    ev.add_argument("--limit", type=int, help="evaluate only the first N problems of each")
    ev.add_argument("--data-seed", type=int,
                    help="seed of a built-in task's held-out set (default: the run's, else 0)")
    ev.add_argument("--test-size", type=int, help="problems drawn from a built-in task "
                    "(default: the run's test_size, else 100)")
    ev.add_argument("--prompt-field",
                    help="field holding the problem (default prompt, problem or question)")
    ev.add_argument("--answer-field", help="field holding the answer (default answer, "
                    "else final_answer, else solution)")
    ev.add_argument("--answer-format", default="auto",
                    choices=("auto", "plain", "gsm8k", "boxed"),
                    help="how a file's answer field reads: GSM8K '#### N' line, last "
                    "\\boxed{}, the value as it is; auto recognises each (default)")
    ev.add_argument("--answer-check", choices=("strict", "lenient"),
                    help="files only: strict counts only the final \\boxed{} (default, as "
                    "the papers); lenient also the stated answer or last number")
    ev.add_argument("--system-prompt", help="system message (default: the run's, else none)")
    ev.add_argument("--no-chat-template", action="store_true",
                    help="feed the raw prompt text instead of the chat template")
    ev.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    ev.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                    help="dtype the weights load in (default float32)")
    ev.add_argument("--precision", choices=PRECISIONS,
                    help="fp32, bf16 (autocast: bf16 matmuls on the loaded weights) or auto "
                    "(bf16 where native); default: a run's train.precision, else fp32")
    ev.add_argument("--out", help="output folder (default results/eval-<time>)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)


def _add_compare(sub) -> None:
    """`maspo compare`: objectives x seeds, evaluated and tabulated."""
    cmp = sub.add_parser(
        "compare", help="train several objectives x seeds and compare them honestly",
        description="Train every objective with every seed on the same model, task and "
        "budget (identical prompts and sampling seeds per seed index), evaluate each final "
        "model on the held-out set, and write results.md/.csv and figures. Rerun the same "
        "command to resume a stopped comparison.")
    cmp.add_argument("--objectives", action="append", required=True, metavar="SPECS",
                     help="comma-separated objective specs: name or name:key=value,...; "
                     "e.g. grpo,clip_higher,dgpo,maspo,maspo:mass_adaptive=false")
    cmp.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    cmp.add_argument("--out", required=True, help="comparison folder (rerun to resume)")
    cmp.add_argument("--config", metavar="PRESET",
                     help="base preset: a name shipped with maspo or a YAML file path")
    cmp.add_argument("--n", type=int, help="final held-out samples per prompt "
                     f"(default {DEFAULT_EVAL_N}; 1 with --greedy)")
    cmp.add_argument("--k", help="k values for Pass@k, each <= n (default 1,n)")
    cmp.add_argument("--eval-temperature", type=_finite,
                     help="final evaluation temperature (default train.eval_temperature)")
    cmp.add_argument("--greedy", action="store_true", help="greedy final evaluation")
    cmp.add_argument("--baseline", help="objective spec every other one is compared with, "
                     f"paired by seed (default {DEFAULT_BASELINE} when it is compared)")
    cmp.add_argument("--target", type=_finite,
                     help="held-out accuracy whose first step is reported (steps to target)")
    cmp.add_argument("--batch-size", type=int, default=16,
                     help="prompts per generate call in the final evaluation")
    cmp.add_argument("--device", help="final evaluation device (default: cuda if available)")
    cmp.add_argument("--jobs", type=int, default=1, help="runs trained at a time, each in "
                     "its own process with its share of the cores (default 1)")
    cmp.add_argument("--keep-checkpoints", action="store_true", help="keep each evaluated "
                     "run's checkpoints (by default only its records and final evaluation)")
    cmp.add_argument("--keep-models", action="store_true",
                     help="keep each evaluated run's final_model/ folder")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmp.add_argument("overrides", nargs="*", metavar="section.key=value",
                     help="base config overrides, e.g. train.steps=50 rollout.group_size=8")
    cmp.set_defaults(func=_compare)


def _add_probe(sub) -> None:
    """`maspo probe`: paired mechanism probes of the objectives on one policy and batch."""
    probe = sub.add_parser(
        "probe", help="what each objective's update does to the same policy on the same "
        "rollout: gradient kept past the trust region, probability mass by token "
        "probability, update size by advantage sign, entropy under random rewards",
        description="Per seed: one rollout of the starting policy, then each objective's "
        "K updates from a copy of it on the same mini-batches; each --claim sets one "
        "objective against its own baseline seed by seed (95%% intervals) and gives a "
        "verdict, without claims every objective is set against --baseline. Each finished "
        "seed is saved "
        "under OUT/seeds/: rerun the same command to go on where it stopped, or with more "
        "--seeds to add some. See maspo.probes.")
    probe.add_argument("--objectives", action="append", required=True, metavar="SPECS",
                       help="comma-separated objective specs, as for maspo compare")
    probe.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9",
                       help="comma-separated seeds, each a new rollout (default 0-9)")
    probe.add_argument("--out", required=True, help="folder for probes.md/.json and figures")
    probe.add_argument("--config", metavar="PRESET", help="base preset or YAML path")
    probe.add_argument("--baseline", default=DEFAULT_BASELINE,
                       help=f"objective spec the others are paired with (default "
                       f"{DEFAULT_BASELINE})")
    probe.add_argument("--claim", action="append", default=[], metavar="CLAIM",
                       help="'OBJECTIVE vs BASELINE: MEASURE higher' (or lower), repeatable: "
                       "a verdict (supported, contradicted, cannot tell) on that paired "
                       "difference; the contrasts shown are the claims' (default: each "
                       "objective vs --baseline)")
    probe.add_argument("--entropy-steps", type=int, default=10,
                       help="steps of training on random rewards for the entropy probe "
                       "(0: skip it; default 10)")
    probe.add_argument("overrides", nargs="*", metavar="section.key=value")
    probe.set_defaults(func=_probe)


def _add_plot(sub) -> None:
    """`maspo plot`: the figures of finished runs."""
    plot = sub.add_parser("plot", help="draw the training-dynamics figures of finished runs")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", default="runs/plot.png",
                      help="PNG path of the curves; <stem>-objective.png gets the gate/clip "
                      "activity and gradient weights")
    plot.set_defaults(func=_plot)


def _add_objectives(sub) -> None:
    """`maspo objectives`: every objective's gradient weights."""
    obj = sub.add_parser("objectives", help="print and plot every objective's gradient weights")
    obj.add_argument("--out", default="runs/objectives.png", help="PNG path for the w(r) curves")
    obj.set_defaults(func=_objectives)

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="maspo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"maspo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_config, _add_demo, _add_eval, _add_compare, _add_probe,
                _add_plot, _add_objectives):
        add(sub)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse with options allowed anywhere among a command's positional arguments."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and argv[0] in commands.choices:
        args = commands.choices[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)  # --help, --version, or an unknown command


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        args.argv = argv  # the command as typed, for the files that record it
    except SystemExit as done:  # --help / --version (0) or a usage error (2, one line)
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    try:
        return args.func(args)
    except UserError as err:
        print(f"maspo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("maspo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes it at exit)
        return 0
    except Exception as err:
        from maspo.update import TrainingStopped

        if isinstance(err, TrainingStopped):
            print(f"maspo: {err}", file=sys.stderr)
            return EXIT_TRAINING_STOPPED
        raise


if __name__ == "__main__":
    sys.exit(main())
