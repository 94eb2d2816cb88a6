"""`maspo` command line: train | eval | compare | plot | objectives | demo.

Errors a user can cause print one sentence and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maspo.errors import EXIT_USER_ERROR, UserError

EXIT_TRAINING_STOPPED = 1
DEFAULT_EVAL_N = 8  # samples per problem when --n is not given (sampled decoding)
DEFAULT_EVAL_MAX_NEW_TOKENS = 512  # completion cap for a plain model (a run: its own)
DEFAULT_BASELINE = "grpo"  # what `maspo compare` sets every other objective against
SHOWN_SAMPLES = 4  # completions of the last step printed at the end of `maspo train`


def _train(args: argparse.Namespace) -> int:
    from maspo.config import load_config
    from maspo.trainer import read_samples, train

    config = load_config(args.config, args.overrides)
    summary = train(config, resume=args.resume, progress=not args.no_progress)
    samples = read_samples(Path(summary["run_dir"]))
    last = [s for s in samples if s["step"] == samples[-1]["step"]] if samples else []
    if last:
        print(f"\ncompletions of step {last[0]['step']} (all saved in samples.jsonl):")
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
    print(f"run directory: {summary['run_dir']} (metrics.jsonl, tensorboard/, checkpoints/)")
    print(f"learning curves: {Path(summary['run_dir']) / 'curves.png'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import time

    from transformers.utils import logging as hf_logging

    from maspo.eval_inputs import RUN_HELDOUT, load_eval_model, locate_model, resolve_datasets
    from maspo.evaluate import (
        SamplingSettings,
        eval_table,
        evaluate_datasets,
        parse_ks,
        write_eval,
    )

    source = locate_model(args.model)  # configs only: every input error before loading
    run = source.run_config
    n = args.n if args.n is not None else (1 if args.greedy else DEFAULT_EVAL_N)
    settings = SamplingSettings(
        n=n, temperature=args.temperature, top_p=args.top_p, greedy=args.greedy,
        max_new_tokens=args.max_new_tokens if args.max_new_tokens is not None else (
            run.rollout.max_new_tokens if run else DEFAULT_EVAL_MAX_NEW_TOKENS),
        seed=args.seed, prompts_per_batch=args.batch_size,
        system_prompt=args.system_prompt if args.system_prompt is not None else (
            run.data.system_prompt if run else None),
        chat_template=not args.no_chat_template and (run.data.chat_template if run else True))
    settings.check()
    ks = parse_ks(args.k or ("1,n" if n > 1 else "1"), n)
    if not args.data and run is None:
        raise UserError("pass --data (a built-in task or a JSONL/Parquet/dataset path) to "
                        "evaluate a model that is not a run")
    fields = {k: v for k, v in (("prompt", args.prompt_field),
                                ("answer", args.answer_field)) if v}
    datasets = resolve_datasets(args.data or [RUN_HELDOUT], fields=fields, run=run,
                                seed=args.data_seed, size=args.test_size, limit=args.limit)
    device = args.device or ("cuda" if _cuda() else "cpu")
    hf_logging.disable_progress_bar()
    model, tokenizer = load_eval_model(source, device=device, dtype=_dtype(args.dtype))
    reports = evaluate_datasets(model, tokenizer, datasets, settings, ks,
                                progress=not args.no_progress)
    out = Path(args.out or f"results/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = write_eval(out, reports, settings, ks, source.describe())
    mode = "greedy" if settings.greedy else (f"temperature {settings.temperature}, "
                                            f"top-p {settings.top_p}")
    print(f"\n{source.describe()}: {n} sample{'s' * (n > 1)} per problem ({mode})\n")
    print(eval_table(reports, n, ks))
    print(f"\nwrote {paths['json']}, {paths['csv'].name}, {paths['markdown'].name}, "
          f"{paths['samples'].name}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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
    from maspo.plots import group_runs, plot_objective_activity, plot_run

    runs = [Path(d) for d in args.runs]
    out = plot_run(runs, Path(args.out))
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
    from maspo.evaluate import SamplingSettings, parse_ks

    check_overrides(args.overrides)
    base = load_config(args.config, args.overrides)
    variants = parse_variants(args.objectives)
    seeds = parse_seeds(args.seeds)
    baseline = None  # the default grpo only when it is compared; a named one must be
    if args.baseline is not None or any(v.spec == DEFAULT_BASELINE for v in variants):
        baseline = find_baseline(variants, args.baseline or DEFAULT_BASELINE).spec
    n = args.n if args.n is not None else (1 if args.greedy else DEFAULT_EVAL_N)
    settings = SamplingSettings(
        n=n, max_new_tokens=base.rollout.max_new_tokens, greedy=args.greedy,
        temperature=(args.eval_temperature if args.eval_temperature is not None
                     else base.train.eval_temperature),
        top_p=base.rollout.top_p, prompts_per_batch=args.batch_size,
        system_prompt=base.data.system_prompt, chat_template=base.data.chat_template)
    settings.check()
    ks = parse_ks(args.k or ("1,n" if n > 1 else "1"), n)
    if args.target is not None and not 0 <= args.target <= 1:
        raise UserError(f"--target is an accuracy in [0, 1], got {args.target}")
    out = Path(args.out)
    device = args.device or ("cuda" if _cuda() else "cpu")
    results = run_comparison(base, variants, seeds, out, settings,
                             progress=not args.no_progress, device=device)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maspo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a policy with an RLVR objective",
                           description="Train with defaults <- --config YAML <- overrides "
                           "like loss.name=grpo rollout.group_size=8.")
    train.add_argument("--config", help="YAML preset (see configs/)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in train.output_dir from its latest checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("overrides", nargs="*", metavar="section.key=value")
    train.set_defaults(func=_train)

    demo = sub.add_parser("demo", help="the embedded default: `maspo train` with no arguments")
    demo.set_defaults(func=_train, config=None, resume=False, no_progress=False, overrides=[])

    ev = sub.add_parser(
        "eval", help="Avg@n / Pass@k / Maj@k of a model, run or checkpoint on datasets",
        description="Sample n completions per problem, score them with the trainer's "
        "verifier and report Avg@n, unbiased Pass@k and Maj@k per dataset and averaged.")
    ev.add_argument("model", metavar="MODEL_OR_RUN",
                    help="HF model dir, 'default', a run dir or <run>/checkpoints/step-N")
    ev.add_argument("--data", action="append", metavar="SPEC",
                    help="built-in task (arithmetic, countdown[:key=value,...]), a JSONL/JSON/"
                    "Parquet file or save_to_disk folder with problem/answer fields, or "
                    "'heldout' (a run's held-out set, the default for a run); repeatable")
    ev.add_argument("--n", type=int, help=f"samples per problem (default {DEFAULT_EVAL_N}; "
                    "1 with --greedy)")
    ev.add_argument("--k", help="comma-separated k values for Pass@k / Maj@k, each <= n; "
                    "'n' means n (default 1,n)")
    ev.add_argument("--temperature", type=float, default=1.0)
    ev.add_argument("--top-p", type=float, default=1.0)
    ev.add_argument("--greedy", action="store_true", help="argmax decoding (needs --n 1)")
    ev.add_argument("--max-new-tokens", type=int, help="completion cap (default: the run's, "
                    f"else {DEFAULT_EVAL_MAX_NEW_TOKENS})")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed")
    ev.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    ev.add_argument("--limit", type=int, help="evaluate only the first N problems of each")
    ev.add_argument("--data-seed", type=int,
                    help="seed of a built-in task's held-out set (default: the run's, else 0)")
    ev.add_argument("--test-size", type=int, help="problems drawn from a built-in task "
                    "(default: the run's test_size, else 100)")
    ev.add_argument("--prompt-field", help="field holding the problem (default problem/prompt)")
    ev.add_argument("--answer-field", help="field holding the answer (default answer)")
    ev.add_argument("--system-prompt", help="system message (default: the run's, else none)")
    ev.add_argument("--no-chat-template", action="store_true",
                    help="feed the raw prompt text instead of the chat template")
    ev.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    ev.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ev.add_argument("--out", help="output folder (default results/eval-<time>)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)

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
    cmp.add_argument("--config", help="base YAML preset (see configs/)")
    cmp.add_argument("--n", type=int, help="final held-out samples per prompt "
                     f"(default {DEFAULT_EVAL_N}; 1 with --greedy)")
    cmp.add_argument("--k", help="k values for Pass@k, each <= n (default 1,n)")
    cmp.add_argument("--eval-temperature", type=float,
                     help="final evaluation temperature (default train.eval_temperature)")
    cmp.add_argument("--greedy", action="store_true", help="greedy final evaluation")
    cmp.add_argument("--baseline", help="objective spec every other one is compared with, "
                     f"paired by seed (default {DEFAULT_BASELINE} when it is compared)")
    cmp.add_argument("--target", type=float,
                     help="held-out accuracy whose first step is reported (steps to target)")
    cmp.add_argument("--batch-size", type=int, default=16,
                     help="prompts per generate call in the final evaluation")
    cmp.add_argument("--device", help="final evaluation device (default: cuda if available)")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmp.add_argument("overrides", nargs="*", metavar="section.key=value",
                     help="base config overrides, e.g. train.steps=50 rollout.group_size=8")
    cmp.set_defaults(func=_compare)

    plot = sub.add_parser("plot", help="draw the training-dynamics figures of finished runs")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", default="runs/plot.png",
                      help="PNG path of the curves; <stem>-objective.png gets the gate/clip "
                      "activity and gradient weights")
    plot.set_defaults(func=_plot)

    obj = sub.add_parser("objectives", help="print and plot every objective's gradient weights")
    obj.add_argument("--out", default="runs/objectives.png", help="PNG path for the w(r) curves")
    obj.set_defaults(func=_objectives)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"maspo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("maspo: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        from maspo.trainer import TrainingStopped

        if isinstance(err, TrainingStopped):
            print(f"maspo: {err}", file=sys.stderr)
            return EXIT_TRAINING_STOPPED
        raise


if __name__ == "__main__":
    sys.exit(main())
