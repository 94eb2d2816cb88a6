"""`maspo` command line: train | config | eval | compare | probe | plot | objectives | demo.

`maspo verl-data` writes verl's parquet files (maspo.integrations.verl_data).

Errors a user can cause print one sentence and exit with code 2, before any model loads
where they can be known then (config errors before torch is even imported) and before
anything is written. Options may stand anywhere among the ``section.key=value`` overrides.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from maspo.cli_parser import DEFAULT_BASELINE, DEFAULT_EVAL_N, FLAGS, parse_args
from maspo.errors import EXIT_USER_ERROR, FieldError, UserError
from maspo.paths import writing

EXIT_TRAINING_STOPPED = 1
SHOWN_SAMPLES = 4  # completions of the last step printed at the end of `maspo train`


def _config(args: argparse.Namespace):
    """The config `maspo train` would run: a preset + overrides, or a run's saved config."""
    from maspo.config import load_config
    from maspo.run import resume_config
    from maspo.spec_text import override_value

    if not args.resume:
        return load_config(args.config, args.overrides)
    if args.config is not None:
        raise UserError("--resume continues a run with the config it saved; drop --config")
    run_dir = override_value(args.overrides, "train.output_dir")
    if not run_dir:
        raise UserError("--resume needs the run directory: add train.output_dir=<run folder>")
    return resume_config(str(run_dir), args.overrides)


def _checked_config(args: argparse.Namespace):
    """``_config``, refused wherever `maspo train` would refuse it before it resolves a
    model: its settings (before torch is imported), its trackers, then its run folder (a
    new run's must be free and writable, a resumed run's must take writes again)."""
    from maspo.paths import check_output_dir
    from maspo.run import check_run_dir
    from maspo.trackers import check_installed

    config = _config(args)
    check_installed(config.train.report_to)
    if args.resume or config.train.output_dir is not None:
        check_run_dir(config, config.train.output_dir, resume=args.resume)
    else:
        check_output_dir("runs", "train.output_dir")
    return config


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    from maspo.config import resolved

    print(yaml.safe_dump(resolved(_checked_config(args)), sort_keys=False).rstrip())
    return 0


def _train(args: argparse.Namespace) -> int:
    from maspo.data.splits import fetch_sources
    from maspo.model_files import check_model_spec
    from maspo.run import RunDir

    config = _checked_config(args)
    fetch_sources(config.data)  # hub data sets, then the model: a miss before a download
    check_model_spec(config.model.path)

    from maspo.trainer import train

    summary = train(config, resume=args.resume, progress=not args.no_progress)
    run = RunDir(Path(summary.run_dir))
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
    before, after = summary.eval_accuracy_before, summary.eval_accuracy_after
    n = summary.eval_prompts * summary.eval_samples_per_prompt
    print(f"\nheld-out accuracy ({summary.eval_prompts} prompts x "
          f"{summary.eval_samples_per_prompt} samples = {n}):")
    if before is not None:
        print(f"  before training: {before:.3f}")
    print(f"  after {summary.steps} steps:  {after:.3f}"
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


def _eval_inputs(args: argparse.Namespace):
    """(out folder, model source, settings, ks, datasets) of `maspo eval`, every input
    checked before a model loads."""
    import time

    from maspo.devices import check_device_name
    from maspo.eval_specs import locate_model

    out = _check_eval_out(Path(args.out or f"results/eval-{time.strftime('%Y%m%d-%H%M%S')}"))
    check_device_name(args.device or "auto", "--device")
    source = locate_model(args.model)  # configs only: every input error before loading
    try:
        return out, source, *_eval_settings_and_data(args, source)
    except BaseException:
        source.release()  # (a run still training: the checkpoint file it holds open)
        raise


def _eval_settings_and_data(args: argparse.Namespace, source) -> tuple:
    """The sampling settings, k values and data sets of `maspo eval` (checked)."""
    from maspo.eval_specs import RUN_HELDOUT, resolve_datasets
    from maspo.evaluate import eval_settings, parse_ks
    from maspo.model_files import check_model_spec

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
    return settings, ks, datasets


def _eval(args: argparse.Namespace) -> int:
    out, source, settings, ks, datasets = _eval_inputs(args)
    from transformers.utils import logging as hf_logging

    from maspo.devices import resolve_device
    from maspo.eval_specs import loaded_for_eval
    from maspo.evaluate import eval_table, evaluate_datasets, write_eval
    from maspo.precision import resolve_precision

    run, n = source.run_config, settings.n
    device = str(resolve_device(args.device or "auto", "--device"))
    # a run evaluates at its own precision unless told otherwise; a plain model in fp32
    precision = resolve_precision(args.precision or (run.train.precision if run else "fp32"),
                                  device)
    hf_logging.disable_progress_bar()
    with loaded_for_eval(source, device=device, precision=precision,
                         dtype=_dtype(args.dtype)) as (model, tokenizer):
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


def _baseline(spec: str | None, variants) -> str | None:
    """The paired comparison's baseline: the default grpo only when it is compared; a
    named one must be."""
    from maspo.objective_specs import find_baseline

    if spec is None and not any(v.spec == DEFAULT_BASELINE for v in variants):
        return None
    return find_baseline(variants, spec or DEFAULT_BASELINE).spec


def _stopping_rule(args: argparse.Namespace, seeds: list[int], baseline: str | None):
    """`--until` / `--max-seeds`: the sequential study's stopping rule, or None."""
    from maspo.compare import parse_until

    if args.until is None:
        if args.max_seeds is not None:
            raise UserError("--max-seeds needs --until (the half-widths to reach)")
        return None
    if baseline is None:
        raise UserError(f"--until needs a paired comparison: add {DEFAULT_BASELINE} to "
                        "--objectives or pass --baseline SPEC")
    return parse_until(args.until, args.max_seeds, seeds)


def _compare(args: argparse.Namespace) -> int:
    import shlex

    from maspo.compare import run_comparison, run_until, write_results
    from maspo.config import check_setting, load_config
    from maspo.evaluate import eval_settings, parse_ks
    from maspo.objective_specs import check_overrides, parse_seeds, parse_variants
    from maspo.trackers import check_installed

    check_overrides(args.overrides)
    base = load_config(args.config, args.overrides)
    check_installed(base.train.report_to)
    variants = parse_variants(args.objectives)
    seeds = parse_seeds(args.seeds)
    baseline = _baseline(args.baseline, variants)
    n = args.n if args.n is not None else (1 if args.greedy else DEFAULT_EVAL_N)
    settings = eval_settings(base, n=n, temperature=args.eval_temperature, greedy=args.greedy,
                             prompts_per_batch=args.batch_size)
    ks = parse_ks(args.k or ("1,n" if n > 1 else "1"), n)
    check_setting("compare.target", args.target)
    check_setting("compare.jobs", args.jobs)
    check_setting("compare.equivalence", args.equivalence)
    from maspo.data.splits import fetch_sources
    from maspo.devices import resolve_device
    from maspo.model_files import check_model_spec
    from maspo.paths import check_output_dir
    from maspo.run import hold_folder

    out = check_output_dir(args.out, "--out")
    fetch_sources(base.data)  # hub data sets and model, before anything is written
    check_model_spec(base.model.path)
    device = str(resolve_device(args.device or "auto", "--device"))
    rule = _stopping_rule(args, seeds, baseline)

    def write(results, _seeds=None) -> dict[str, Path]:
        with writing(f"the results to {str(out)!r}", "free some space and run the same "
                     "command again (finished runs are not trained again)"):
            return write_results(out, results, n, ks, args.target, baseline, rule,
                                 args.equivalence)

    grid = {"progress": not args.no_progress, "device": device, "jobs": args.jobs,
            "keep_checkpoints": args.keep_checkpoints, "keep_models": args.keep_models}
    # the study's one writer; each run of it holds its own folder as well (maspo.grid)
    with hold_folder(out, "the comparison folder", "maspo " + shlex.join(args.argv)):
        if rule is None:
            results = run_comparison(base, variants, seeds, out, settings, **grid)
        else:
            results = run_until(base, variants, seeds, out, settings, rule, baseline, write,
                                **grid)
        paths = write(results)
    _print_comparison(paths, baseline)
    return 0


def _print_comparison(paths: dict[str, Path], baseline: str | None) -> None:
    print()
    print(paths["markdown"].read_text().rstrip())
    if baseline is None:
        print(f"\n(no paired comparison: {DEFAULT_BASELINE} is not among the objectives; "
              "pass --baseline SPEC)")
    print(f"\nwrote {paths['markdown']}, {paths['csv'].name}, {paths['paired_csv'].name}, "
          f"{paths['json'].name}, figures/{paths['curves'].name}, "
          f"figures/{paths['activity'].name}, figures/{paths['ratios'].name}")


def _probe(args: argparse.Namespace) -> int:
    import dataclasses
    import shlex

    from maspo.config import check_setting, load_config
    from maspo.objective_specs import check_overrides, find_baseline, parse_seeds, parse_variants
    from maspo.paths import check_output_dir
    from maspo.trackers import check_installed

    check_overrides(args.overrides)
    base = load_config(args.config, args.overrides)
    check_installed(base.train.report_to)
    variants = parse_variants(args.objectives)
    seeds = parse_seeds(args.seeds)
    # claims name their own baselines: the default one is needed only without them
    baseline = (None if args.claim and args.baseline is None else
                find_baseline(variants, args.baseline or DEFAULT_BASELINE).spec)
    check_setting("probe.entropy_steps", args.entropy_steps)
    out = check_output_dir(args.out, "--out")

    from transformers.utils import logging as hf_logging

    from maspo.config import to_dict
    from maspo.probes import Contrast, parse_claim, run_probes, write_probes
    from maspo.provenance import maspo_commit
    from maspo.run import hold_folder

    claims = [parse_claim(text, variants) for text in args.claim]
    contrasts = list(dict.fromkeys(c.contrast for c in claims)) or [
        Contrast(v.spec, baseline) for v in variants if v.spec != baseline]

    hf_logging.disable_progress_bar()
    command = "maspo " + shlex.join(args.argv)
    with hold_folder(out, "the probe folder", command):
        per_seed = run_probes(base, variants, seeds, args.entropy_steps, cache=out / "seeds",
                              study=out)
        record = {"command": command, "commit": maspo_commit(), "config": to_dict(base),
                  "objectives": [v.spec for v in variants],
                  "entropy_steps": args.entropy_steps,
                  "contrasts": [dataclasses.asdict(c) for c in contrasts],
                  "claims": [dataclasses.asdict(c) for c in claims], "seeds": per_seed}
        with writing(f"the probes to {str(out)!r}", "free some space and run the same "
                     "command again (finished seeds are not probed again)"):
            paths = write_probes(out, record)
    print(paths["markdown"].read_text().rstrip())
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _verl_data(args: argparse.Namespace) -> int:
    from maspo.integrations.verl_data import write_verl_files

    fields = {k: v for k, v in (("prompt", args.prompt_field),
                                ("answer", args.answer_field)) if v}
    written = write_verl_files(args.train, args.out, val=args.val, val_size=args.val_size,
                               instruction=args.instruction, fields=fields,
                               answer_format=args.answer_format)
    print(f"wrote {written.train} ({written.train_rows} rows) and {written.val} "
          f"({written.val_rows} rows)\nTRAIN_FILES={written.train} VAL_FILES={written.val}")
    return 0


COMMANDS = {"train": _train, "show_config": _show_config, "eval": _eval, "compare": _compare,
            "probe": _probe, "plot": _plot, "objectives": _objectives, "verl_data": _verl_data}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that a command ends as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None  # (tests pass argv and stay in-process)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        args.argv = argv  # the command as typed, for the files that record it
    except SystemExit as done:  # --help / --version (0) or a usage error (2, one line)
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    if as_program:  # the process is ours: freed blocks stay with it (maspo.memory)
        from maspo.memory import keep_freed_memory

        keep_freed_memory()
    previous = None
    if threading.current_thread() is threading.main_thread():  # (signals go to it alone)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return COMMANDS[args.run](args)
    except UserError as err:
        if isinstance(err, FieldError):  # a setting's field, named by its flag
            err = err.named(FLAGS.get(args.run, {}))
        print(f"maspo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as stop:  # the message of an Interrupted says how to go on
        term = isinstance(stop, _Terminated) or isinstance(stop.__cause__, _Terminated)
        print(f"maspo: {'terminated (SIGTERM)' if term else 'interrupted'}"
              + (f" {stop}" if str(stop) else ""), file=sys.stderr)
        code = 128 + (signal.SIGTERM if term else signal.SIGINT)
        if as_program:  # files are closed and locks released by now: skip the teardown,
            sys.stdout.flush()  # which was once seen to hang after an interrupt
            sys.stderr.flush()
            os._exit(code)
        return code
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes it at exit)
        return 0
    except Exception as err:
        from maspo.update import TrainingStopped

        if isinstance(err, TrainingStopped):
            print(f"maspo: {err}", file=sys.stderr)
            return EXIT_TRAINING_STOPPED
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
