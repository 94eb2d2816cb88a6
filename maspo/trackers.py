"""Experiment trackers a run reports to (``train.report_to``): TensorBoard, trackio, wandb
and MLflow, behind one small interface (``Tracker``: ``log`` a step, ``close``).

Every tracker gets what metrics.jsonl holds: each finite number of a step's record under
the name maspo logs it (``reward``, ``eval/accuracy``, ``time/generate``, ...), at that
step (the x axis), and the run's resolved config (``maspo.config.resolved``) as the run's
parameters. Where each keeps its data is its own: TensorBoard's events in the run folder,
wandb's files under ``<run>/wandb/`` (online, or offline with ``WANDB_MODE=offline``),
trackio's local database (``TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``) and
MLflow's tracking store (``MLFLOW_TRACKING_URI``, default MLflow's own).

A run is named ``RunLabel``: a project (wandb and trackio project, MLflow experiment), a
run name and a group (e.g. an objective across the seeds of a comparison), so a tracker's
own views compare the runs of one study. A resumed run continues the same tracker run
(trackio by name, wandb and MLflow by the id the run folder keeps) and logs the steps
after its checkpoint again: where a tracker keeps every value logged at a step (MLflow,
wandb's history), the later one is the run's; TensorBoard drops the earlier ones.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from maspo.config_build import flatten
from maspo.errors import UserError

PACKAGES = {"trackio": "trackio", "wandb": "wandb", "mlflow": "mlflow"}  # tracker -> module
DEFAULT_PROJECT = "maspo"  # project (MLflow: experiment) of a run not part of a study
MLFLOW_PARAMS_PER_BATCH = 100  # MLflow's limit on the params of one log_batch call


@dataclass(frozen=True)
class RunLabel:
    """How a run is named in a tracker."""

    project: str  # wandb / trackio project, MLflow experiment
    name: str  # the run's name within it
    group: str | None = None  # runs that belong together (an objective across seeds)


@dataclass(frozen=True)
class Destination:
    """Everything a tracker needs to open (or reopen) one run."""

    label: RunLabel
    params: dict[str, Any]  # the resolved config, nested as in config.yaml
    events: Path  # TensorBoard's event folder
    files: Path  # the folder wandb keeps its files in (``wandb/`` under it)
    ids: dict[str, str] = field(default_factory=dict)  # tracker -> run id to continue
    resume_step: int | None = None  # resumed: steps after this one are logged again


class Tracker(Protocol):
    run_id: str | None  # what reopens this tracker's run on resume (None: nothing)

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self, ok: bool) -> None: ...


def check_installed(report_to: Sequence[str], key: str = "train.report_to") -> None:
    """UserError naming the install line of the first tracker that is not installed."""
    for name in report_to:
        module = PACKAGES.get(name)
        if module is not None and not _importable(module):
            raise UserError(f"config key {key!r} names {name}, which is not installed here; "
                            f"install it with: pip install 'maspo[{name}]'")


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a ``None`` in sys.modules,
    Python's mark of a module that must not be imported, counts as not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a spec
        return False


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record a tracker logs: every finite one but the step."""
    return {key: float(value) for key, value in record.items()
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value)}


class Trackers:
    """The trackers of one run, opened together; ``log`` takes a metrics record."""

    def __init__(self, report_to: Sequence[str], destination: Destination) -> None:
        check_installed(report_to)
        self.trackers: dict[str, Tracker] = {}
        for name in report_to:
            if name == "none":
                continue
            try:
                self.trackers[name] = OPENERS[name](destination)
            except OSError:  # a full disk, a read-only folder: the caller's sentence
                self.close(ok=False)
                raise
            except Exception as err:  # e.g. wandb online without a login
                self.close(ok=False)
                first = (str(err).strip().splitlines() or [""])[0]
                raise UserError(f"{name} (train.report_to) could not start the run "
                                f"{destination.label.name!r}: {type(err).__name__}: "
                                f"{first}") from None
            except BaseException:
                self.close(ok=False)
                raise

    def ids(self) -> dict[str, str]:
        """tracker -> run id, for the trackers whose run a resume reopens by id."""
        return {name: t.run_id for name, t in self.trackers.items() if t.run_id is not None}

    def log(self, record: dict[str, Any]) -> None:
        metrics = scalars(record)
        for tracker in self.trackers.values():
            tracker.log(metrics, record["step"])

    def close(self, ok: bool = True) -> None:
        for tracker in self.trackers.values():
            tracker.close(ok)
        self.trackers = {}


# ---------------------------------------------------------------------------------------
# The trackers.


class TensorBoard:
    run_id = None

    def __init__(self, d: Destination) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = None if d.resume_step is None else d.resume_step + 1  # drop later events
        self.writer = SummaryWriter(str(d.events), purge_step=purge)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, ok: bool) -> None:
        self.writer.close()


class Trackio:
    """trackio's local store (or a Space, as trackio's own settings say); resumed by name."""

    def __init__(self, d: Destination) -> None:
        import trackio

        self.run_id = d.label.name
        self.run = trackio.init(project=d.label.project, name=d.label.name,
                                group=d.label.group, config=d.params,
                                resume="allow" if d.ids.get("trackio") else "never",
                                auto_log_cpu=False)  # the step's own metrics only

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self, ok: bool) -> None:
        import trackio

        trackio.finish()  # this run, which init made trackio's current one


class Wandb:
    """A wandb run whose x axis is maspo's step (logged as the metric ``step``, so the
    steps a resumed run logs again are kept rather than refused as going back)."""

    def __init__(self, d: Destination) -> None:
        import wandb

        d.files.mkdir(parents=True, exist_ok=True)
        saved = d.ids.get("wandb")
        self.run = wandb.init(project=d.label.project, name=d.label.name, group=d.label.group,
                              config=d.params, dir=str(d.files), id=saved,
                              resume="allow" if saved else None, reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True))
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        self.run_id = self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({"step": step, **metrics})

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


class Mlflow:
    """An MLflow run in the experiment named by the project, through ``MlflowClient`` (no
    global active run, so several can be open in one process)."""

    def __init__(self, d: Destination) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = client = MlflowClient()
        self.run_id = d.ids.get("mlflow")
        if self.run_id is None:
            tags = {"group": d.label.group} if d.label.group else {}
            run = client.create_run(_mlflow_experiment(client, d.label.project),
                                    run_name=d.label.name, tags=tags)
            self.run_id, logged = run.info.run_id, {}
        else:
            client.update_run(self.run_id, status="RUNNING")
            logged = client.get_run(self.run_id).data.params
        # MLflow refuses to change a param: a resume adds only keys it does not have yet
        params = [Param(k, str(v)) for k, v in flatten(d.params).items() if k not in logged]
        for i in range(0, len(params), MLFLOW_PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=params[i:i + MLFLOW_PARAMS_PER_BATCH])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in metrics.items()])

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def _mlflow_experiment(client, name: str) -> str:
    """The id of experiment ``name``, created if new (a parallel run may create it first)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        return client.get_experiment_by_name(name).experiment_id


OPENERS = {"tensorboard": TensorBoard, "trackio": Trackio, "wandb": Wandb, "mlflow": Mlflow}
