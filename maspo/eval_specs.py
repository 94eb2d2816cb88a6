"""What `maspo eval` evaluates: a model (HF dir, run, or checkpoint) and named datasets.

Model specs:
- an HF model directory (``config.json``), or "default" (the embedded model);
- a Hugging Face Hub model id ``org/name[@revision]`` (``maspo.hub``), resolved to its
  commit so the evaluation records which weights it scored;
- a run directory (``maspo.run.RunDir``): its final model, else its latest checkpoint;
- a checkpoint ``<run>/checkpoints/step-N``: the base model named by the run's config
  (``model.path``, LoRA settings) with ``weights.safetensors`` loaded on
  top. Loading uses safetensors and YAML only: nothing is unpickled.

Dataset specs (``--data``, repeatable):
- a JSONL / JSON / Parquet file or a ``save_to_disk`` folder as published (GSM8K, MATH,
  MATH500, AIME, AMC23, Minerva, OlympiadBench...: ``maspo.data.load_examples``), read
  with ``answer_format`` and checked with ``answer_check`` (strict by default);
- a Hugging Face Hub data set id ``org/name[@revision][:config=C][,split=S]`` read as
  the same files would be (``maspo.data.hub_datasets``; with no split named, ``test``);
- a built-in task ``name`` or ``name:key=value,...`` (task settings): its held-out set.
  Evaluating a run on its own task, the settings, seed and size default to the run's, so
  the problems are exactly the run's held-out prompts (never its training prompts);
- ``heldout``: the run's held-out set, whatever its data (the default for a run);
- a benchmark suite name (``SUITES``): its data sets by hub id, each column named as in
  the papers' tables. ``paper-math`` is the six benchmarks of the MASPO and DGPO papers.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from maspo.checkpoint import WEIGHTS_FILE, verify_checkpoint
from maspo.config import Config, DataConfig, check_setting
from maspo.data import TASKS, Example, get_task, heldout_set, load_examples
from maspo.data.hub_datasets import fetch_dataset, parse_dataset_id
from maspo.data.splits import data_splits
from maspo.errors import UserError
from maspo.hub import MODEL, parse_hub_id, pin
from maspo.models import DEFAULT_MODEL_ALIASES, load_policy, resolve_model
from maspo.precision import autocast, prepare_model
from maspo.run import RunDir
from maspo.spec_text import parse_named_spec

RUN_HELDOUT = "heldout"  # --data spec: the run's own held-out set
# The benchmarks of the MASPO / DGPO papers' tables (Avg@32, Pass@32), in their column order:
# (column, hub data set id). Each id's only split or its test split is read as published.
PAPER_BENCHMARKS = (
    ("AIME24", "HuggingFaceH4/aime_2024"),  # problem, answer ("073"); its one split: train
    ("AIME25", "math-ai/aime25"),  # problem, answer
    ("AMC23", "math-ai/amc23"),  # question, answer (a float: 27.0)
    ("MATH500", "HuggingFaceH4/MATH-500"),  # problem, answer
    ("Minerva", "math-ai/minervamath"),  # question, answer
    ("OlympiadBench", "math-ai/olympiadbench"),  # question, final_answer (a list)
)
SUITES = {"paper-math": PAPER_BENCHMARKS}  # --data NAME -> its (column, spec) pairs


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points, found without loading any weights."""

    spec: str
    model_dir: str | None  # an HF directory (or default alias) loaded as it is
    checkpoint: Path | None  # a checkpoint dir whose weights go on the run's base model
    run_config: Config | None  # the run's config when the spec is a run or checkpoint
    # the checkpoint's weights file, held open: a run still training prunes old checkpoints
    # as it saves new ones, and an open file outlives its deletion
    held_weights: BinaryIO | None = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        """Close the held weights file (a spec located but not loaded after all)."""
        if self.held_weights is not None:
            self.held_weights.close()

    def describe(self) -> str:
        if self.checkpoint is not None:
            return f"checkpoint {self.checkpoint}"
        if self.run_config is not None:
            return f"run {Path(self.model_dir).parent} ({Path(self.model_dir).name})"
        return f"model {self.spec}"


@dataclass
class EvalDataset:
    name: str  # table row label
    source: str  # the spec it came from, in words
    examples: list[Example]


def locate_model(spec: str) -> ModelSource:
    """Classify ``spec`` (see the module docstring); reads configs only, no weights."""
    path = Path(spec).expanduser()
    if spec.strip().lower() in DEFAULT_MODEL_ALIASES or (path / "config.json").is_file():
        return ModelSource(spec, spec, None, None)
    if (path / WEIGHTS_FILE).is_file():  # <run>/checkpoints/step-N
        verify_checkpoint(path, (WEIGHTS_FILE,))  # altered bytes: named, never evaluated
        return ModelSource(spec, None, path, RunDir.of_checkpoint(path).read_config())
    run = RunDir(path)
    if run.config.is_file():  # a run directory
        config = run.read_config()
        writer = run.writer()  # a run still training: only its finished files are read
        if run.has_final_model() and writer is None:
            return ModelSource(spec, str(run.final_model), None, config)
        if writer is None:  # LoRA runs, unfinished runs
            checkpoint, held = run.latest_checkpoint(), None
        else:
            checkpoint, held = _hold_newest_checkpoint(run)
        if checkpoint is None:
            raise UserError(f"run {str(path)!r} has neither a {run.final_model.name}/ nor "
                            "a checkpoint to evaluate" + (f" yet: it is still training "
                                                          f"({writer})" if writer else ""))
        if writer is not None:
            print(f"maspo: note: run {str(path)!r} is still training ({writer}); evaluating "
                  f"{checkpoint.name}, the newest checkpoint it has saved", file=sys.stderr)
        return ModelSource(spec, None, checkpoint, config, held)
    if parse_hub_id(spec, MODEL) is not None:
        pinned = pin(spec, MODEL)
        return ModelSource(pinned, pinned, None, None)
    resolve_model(spec)  # raises the UserError that names what is missing
    raise UserError(f"{spec!r} is neither a model directory, a run nor a checkpoint")


HOLD_ATTEMPTS = 5  # a checkpoint pruned between choosing and opening it: choose again
HOLD_RETRY_S = 0.2


def _hold_newest_checkpoint(run: RunDir) -> tuple[Path | None, BinaryIO | None]:
    """The newest checkpoint of a run still training, with its weights file open.

    The trainer saves a checkpoint and then deletes the oldest: one chosen here may vanish
    before it is opened (or look damaged while it is being deleted), so it is chosen again.
    """
    def hold(note=None) -> tuple[Path | None, BinaryIO | None]:
        checkpoint = run.latest_checkpoint(note)
        return (None, None) if checkpoint is None else (
            checkpoint, (checkpoint / WEIGHTS_FILE).open("rb"))

    for _ in range(HOLD_ATTEMPTS - 1):
        try:
            return hold(note=lambda _: None)  # (damage seen mid-deletion is not reported)
        except (OSError, UserError):
            time.sleep(HOLD_RETRY_S)
    try:
        return hold()
    except OSError as err:
        raise UserError(f"the checkpoints of {str(run.root)!r} were pruned by the run "
                        f"still training as fast as they could be opened ({type(err).__name__})"
                        "; evaluate again, or once it has finished") from None


@contextlib.contextmanager
def loaded_for_eval(source: ModelSource | str, *, device: str, precision: str,
                    dtype: torch.dtype = torch.float32) -> Iterator[tuple[Any, Any]]:
    """(model, tokenizer) of ``source`` made ready to evaluate at ``precision`` (resolved
    for ``device``), inside its autocast: the setup that `maspo eval` and a comparison's
    final evaluation share."""
    model, tokenizer = load_eval_model(source, device=device, dtype=dtype)
    prepare_model(model, precision)
    with autocast(precision, device):
        yield model, tokenizer


def load_eval_model(source: ModelSource | str, device: str = "cpu",
                    dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for a located spec (or a spec string)."""
    if isinstance(source, str):
        source = locate_model(source)
    if source.checkpoint is None:
        model, tokenizer = load_policy(resolve_model(source.model_dir), dtype=dtype,
                                       device=device)
        return model.eval(), tokenizer
    try:
        return _load_checkpoint_model(source, device, dtype)
    finally:
        source.release()  # (read, or never to be: a failed load holds no file open)


def _load_checkpoint_model(source: ModelSource, device: str,
                           dtype: torch.dtype) -> tuple[Any, Any]:
    import safetensors.torch
    from safetensors.torch import load_model

    config = source.run_config
    model, tokenizer = load_policy(resolve_model(config.model.path), dtype=dtype,
                                   device=device, lora=config.model.lora)
    weights = source.checkpoint / WEIGHTS_FILE
    try:
        if source.held_weights is None:
            missing, unexpected = load_model(model, weights, strict=False, device=str(device))
        else:  # (read from the open file: the checkpoint itself may be gone by now)
            with source.held_weights as held:
                state = safetensors.torch.load(held.read())
            missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as err:  # safetensors raises several types for a corrupt file
        raise UserError(f"checkpoint weights {str(weights)!r} are unreadable "
                        f"({type(err).__name__})") from None
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if unexpected or trainable & set(missing):
        raise UserError(f"checkpoint {str(source.checkpoint)!r} does not match its run's "
                        f"model {config.model.path!r}")
    return model.eval(), tokenizer


# ---------------------------------------------------------------------------------------
# Datasets.


def resolve_dataset(spec: str, *, fields: dict[str, str] | None = None,
                    run: Config | None = None, seed: int | None = None,
                    size: int | None = None, limit: int | None = None,
                    answer_format: str = "auto",
                    answer_check: str | None = None) -> EvalDataset:
    """The examples named by one ``--data`` spec (see the module docstring).

    ``seed`` and ``size`` pick a built-in task's held-out set (defaults: the run's when it
    trained on that task, else 0 and ``data.test_size``'s default); ``limit`` keeps the first rows.
    """
    for key, value in (("eval.limit", limit), ("eval.test_size", size),
                       ("eval.data_seed", seed)):
        check_setting(key, value)
    path = Path(spec).expanduser()
    if spec == RUN_HELDOUT:
        if run is None:
            raise UserError("--data heldout needs a run or checkpoint to take the held-out "
                            "set from; pass a dataset file or task instead")
        examples = data_splits(run.data, run.train.seed).heldout
        source = "the run's held-out set"
    elif path.exists():
        examples = load_examples(path, fields, answer_format=answer_format,
                                 answer_check=answer_check)
        source = str(path)
    elif (hub := parse_dataset_id(spec)) is not None:
        named = fetch_dataset(hub, "test").hub  # commit, config and split: what is scored
        examples = load_examples(str(named), fields, answer_format=answer_format,
                                 answer_check=answer_check)
        source = named.label
    elif parse_named_spec(spec, "--data")[0] in TASKS:
        name, settings = parse_named_spec(spec, "--data")
        own = run is not None and run.data.path is None and run.data.task == name
        if own:
            settings = {**run.data.task_settings, **settings}
        seed = seed if seed is not None else (run.train.seed if own else 0)
        size = size if size is not None else (run.data.test_size if own else DataConfig().test_size)
        examples = heldout_set(get_task(name, **settings), seed=seed, size=size)
        shown = ",".join(f"{k}={v}" for k, v in settings.items())
        source = f"task {name}" + (f" ({shown})" if shown else "") + f", seed {seed}"
    else:
        raise UserError(f"--data {spec!r} is neither an existing file or folder, a hub data "
                        f"set id (org/name) nor a built-in task ({', '.join(TASKS)})")
    if limit is not None:
        examples = examples[:limit]
    if not examples:
        raise UserError(f"--data {spec!r} holds no problems to evaluate")
    name = path.stem if path.exists() and spec != RUN_HELDOUT else spec
    return EvalDataset(name, source, list(examples))


def _expand_suite(spec: str) -> list[tuple[str | None, str]]:
    """A suite name (``SUITES``, unless a local path of that name exists) as its (column,
    spec) pairs; any other spec as ``[(None, spec)]``."""
    if spec in SUITES and not Path(spec).expanduser().exists():
        return list(SUITES[spec])
    return [(None, spec)]


def resolve_datasets(specs: list[str], **kwargs: Any) -> list[EvalDataset]:
    """``resolve_dataset`` of each spec (a suite: each of its data sets, named by its
    column); rows are renamed by their spec if names clash.

    ``answer_format`` / ``answer_check`` read data files only: with no file among the
    specs they would change nothing, so they are refused.
    """
    named = [pair for spec in specs for pair in _expand_suite(spec)]  # (column or None, spec)
    specs = [spec for _, spec in named]
    answer_options = (kwargs.get("answer_format", "auto") != "auto"
                      or kwargs.get("answer_check") is not None)
    if answer_options and not any(
            spec != RUN_HELDOUT and (Path(spec).expanduser().exists()
                                     or parse_dataset_id(spec) is not None) for spec in specs):
        raise UserError("--answer-format and --answer-check read data files; none of the "
                        "--data specs is a file or a hub data set (a built-in task or a run's "
                        "held-out set keeps its own answer check)")
    datasets = [resolve_dataset(spec, **kwargs) for spec in specs]
    names = [d.name for d in datasets]
    for dataset, (column, spec) in zip(datasets, named, strict=True):
        if column is not None:
            dataset.name = column
        elif names.count(dataset.name) > 1:
            dataset.name = spec
    if len({d.name for d in datasets}) < len(datasets):
        raise UserError("--data names the same dataset twice")
    return datasets
