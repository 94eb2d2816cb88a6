"""The `maspo` command line's grammar: every command, option and help text (argparse).

Each command's parser sets ``run`` to the command's name, which ``maspo.cli`` runs.
Options may stand anywhere among the ``section.key=value`` overrides.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any

from maspo import __version__
from maspo.errors import EXIT_USER_ERROR

DEFAULT_EVAL_N = 8  # samples per problem when --n is not given (sampled decoding)
DEFAULT_BASELINE = "grpo"  # what `maspo compare` sets every other objective against
_EVAL_FLAGS = {"eval.n": "--n", "eval.greedy": "--greedy", "eval.prompts_per_batch": "--batch-size"}
FLAGS = {  # command -> {setting or config field: its flag}, how errors name a field
    "eval": {**_EVAL_FLAGS, "sampling.max_new_tokens": "--max-new-tokens",
             "sampling.temperature": "--temperature", "sampling.top_p": "--top-p",
             "eval.limit": "--limit", "eval.test_size": "--test-size",
             "eval.data_seed": "--data-seed"},
    "compare": {**_EVAL_FLAGS, "sampling.temperature": "--eval-temperature",
                "compare.jobs": "--jobs", "compare.target": "--target",
                "compare.equivalence": "--equivalence"},
    "probe": {"probe.entropy_steps": "--entropy-steps"},
}
DESCRIPTION = ("`maspo` command line: train | config | eval | compare | probe | plot | objectives "
               "| demo | verl-data.")


class Parser(argparse.ArgumentParser):
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


def describe_keys(data: dict[str, Any] | None = None) -> list[str]:
    """One ``section.key=default  (doc; range or choices)`` line per config key, for
    ``--help``, from ``maspo.config.KEYS``."""
    import yaml

    from maspo.config import KEYS, Config, flatten, to_dict

    lines = []
    for key, value in flatten(to_dict(Config()) if data is None else data).items():
        plain = list(value) if isinstance(value, tuple) else value
        shown = yaml.safe_dump(plain, default_flow_style=True).strip()
        shown = shown.removesuffix("...").strip()  # YAML's end marker after a scalar
        lines.append(f"  {key}={shown}  ({KEYS[key].describe()})")
    return lines


def _keys_epilog() -> str:
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
    train.set_defaults(run="train")


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
    show.set_defaults(run="show_config")


def _add_demo(sub) -> None:
    """`maspo demo`: the embedded default."""
    demo = sub.add_parser("demo", help="the embedded default: `maspo train` with no arguments")
    demo.set_defaults(run="train", config=None, resume=False, no_progress=False, overrides=[])


def _batch_help(where: str = "") -> str:
    """--batch-size's help, with the default's number of completions from the config."""
    from maspo.config import CALL_POSITIONS, EVAL_BATCH_ROWS, EVAL_MAX_ROWS

    return (f"prompts per generate call{where} (default: {EVAL_BATCH_ROWS} completions' "
            f"worth, at least one prompt, or up to {EVAL_MAX_ROWS} while completions x "
            f"(longest prompt + length cap) <= {CALL_POSITIONS} tokens); the "
            "completions do not depend on it")


def _eval_sampling_arguments(ev: argparse.ArgumentParser) -> None:
    """`maspo eval`'s sampling options: n, k, temperature, top-p, greedy, length, seed."""
    from maspo.config import EVAL_MAX_NEW_TOKENS

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


def _add_eval(sub) -> None:
    """`maspo eval`: Avg@n / Pass@k / Maj@k of a model, run or checkpoint."""
    from maspo.config import PRECISIONS, DataConfig

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
                    "default), 'heldout' (a run's held-out set, the default for a run), or "
                    "'paper-math' (AIME24, AIME25, AMC23, MATH500, Minerva, OlympiadBench by "
                    "hub id); repeatable")
    _eval_sampling_arguments(ev)
    ev.add_argument("--batch-size", type=int, help=_batch_help())
    ev.add_argument("--limit", type=int, help="evaluate only the first N problems of each")
    ev.add_argument("--data-seed", type=int,
                    help="seed of a built-in task's held-out set (default: the run's, else 0)")
    ev.add_argument("--test-size", type=int, help="problems drawn from a built-in task "
                    "(default: the run's data.test_size, else its default "
                    f"{DataConfig().test_size})")
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
    ev.set_defaults(run="eval")


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
    cmp.add_argument("--batch-size", type=int, help=_batch_help(" of the final evaluation"))
    cmp.add_argument("--device", help="final evaluation device (default: cuda if available)")
    cmp.add_argument("--jobs", type=int, default=1, help="runs trained at a time, each in "
                     "its own process with its share of the cores (default 1)")
    cmp.add_argument("--keep-checkpoints", action="store_true", help="keep each evaluated "
                     "run's checkpoints (by default only its records and final evaluation)")
    cmp.add_argument("--keep-models", action="store_true",
                     help="keep each evaluated run's final_model/ folder")
    cmp.add_argument("--until", metavar="WIDTHS", help="keep adding seeds (--jobs at a "
                     "time, after --seeds) until every paired row's 95%% half-width is at "
                     "most these, e.g. auc=0.03,final=0.05; needs --max-seeds")
    cmp.add_argument("--max-seeds", type=int, help="with --until: stop adding seeds here")
    cmp.add_argument("--equivalence", type=float, metavar="MARGIN", help="paired verdicts "
                     "say 'equivalent' when the 95%% interval contains 0 and lies inside "
                     "+-MARGIN (e.g. 0.03)")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmp.add_argument("overrides", nargs="*", metavar="section.key=value",
                     help="base config overrides, e.g. train.steps=50 rollout.group_size=8")
    cmp.set_defaults(run="compare")


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
        "seed is saved under OUT/seeds/: rerun the same command to go on where it "
        "stopped, or with more --seeds to add some. See maspo.probes.")
    probe.add_argument("--objectives", action="append", required=True, metavar="SPECS",
                       help="comma-separated objective specs, as for maspo compare")
    probe.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9",
                       help="comma-separated seeds, each a new rollout (default 0-9)")
    probe.add_argument("--out", required=True, help="folder for probes.md/.json and figures")
    probe.add_argument("--config", metavar="PRESET", help="base preset or YAML path")
    probe.add_argument("--baseline", help=f"objective spec the others are paired with "
                       f"when no --claim is given (default {DEFAULT_BASELINE})")
    probe.add_argument("--claim", action="append", default=[], metavar="CLAIM",
                       help="'OBJECTIVE vs BASELINE: MEASURE higher' (or lower), repeatable: "
                       "a verdict (supported, contradicted, cannot tell) on that paired "
                       "difference; the contrasts shown are the claims' (default: each "
                       "objective vs --baseline)")
    probe.add_argument("--entropy-steps", type=int, default=10,
                       help="steps of training on random rewards for the entropy probe "
                       "(0: skip it; default 10)")
    probe.add_argument("overrides", nargs="*", metavar="section.key=value")
    probe.set_defaults(run="probe")


def _add_plot(sub) -> None:
    """`maspo plot`: the figures of finished runs."""
    plot = sub.add_parser("plot", help="draw the training-dynamics figures of finished runs")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", default="runs/plot.png",
                      help="PNG path of the curves; <stem>-objective.png gets the gate/clip "
                      "activity and gradient weights")
    plot.set_defaults(run="plot")


def _add_objectives(sub) -> None:
    """`maspo objectives`: every objective's gradient weights."""
    obj = sub.add_parser("objectives", help="print and plot every objective's gradient weights")
    obj.add_argument("--out", default="runs/objectives.png", help="PNG path for the w(r) curves")
    obj.set_defaults(run="objectives")


def _add_verl_data(sub) -> None:
    """`maspo verl-data`: verl's parquet files (maspo.integrations.verl_data)."""
    from maspo.integrations.verl_data import DEFAULT_VAL_SIZE, INSTRUCTION

    vd = sub.add_parser("verl-data", help="write verl's train/val parquet files from a data "
                        "set id or a local file",
                        description="Write OUT/train.parquet and OUT/val.parquet in verl's RL "
                        "layout, scored by verl's default math reward (last \\boxed{}).")
    vd.add_argument("train", metavar="DATA", help="JSONL/JSON/Parquet file, save_to_disk "
                    "folder or hub data set id org/name[@revision][:config=C][,split=S] "
                    "(split train by default)")
    vd.add_argument("--out", required=True, help="folder for train.parquet and val.parquet")
    vd.add_argument("--val", action="append", metavar="SPEC", help="validation file or hub "
                    "id (split test by default); repeatable. Default: hold out the first "
                    "--val-size training rows")
    vd.add_argument("--val-size", type=int, default=DEFAULT_VAL_SIZE,
                    help=f"rows held out without --val (default {DEFAULT_VAL_SIZE})")
    vd.add_argument("--instruction", default=INSTRUCTION,
                    help="appended to each problem ('' for none; default: %(default)r)")
    vd.add_argument("--prompt-field", help="field holding the problem")
    vd.add_argument("--answer-field", help="field holding the answer")
    vd.add_argument("--answer-format", default="auto",
                    choices=("auto", "plain", "gsm8k", "boxed"),
                    help="how the answer field reads (as `maspo eval`)")
    vd.set_defaults(run="verl_data")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="maspo", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"maspo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_config, _add_demo, _add_eval, _add_compare, _add_probe,
                _add_plot, _add_objectives, _add_verl_data):
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
