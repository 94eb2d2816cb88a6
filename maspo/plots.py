"""PNG figures of training runs, one line per objective with a band over seeds.

- ``plot_run``: the training dynamics of one or more runs (``maspo plot``, and each run's
  curves): held-out accuracy, reward, entropy, response length, gradient utilisation,
  mean gradient weight.
- ``plot_learning_curves``: the four learning curves of a comparison (like Figure 3 of the
  MASPO paper): mean over seeds with a +/- 1 std band.
- ``plot_objective_activity``: each objective's gate/clip activity over training (its
  first ``obj/<region>_frac`` metric) and its mean gradient weight by old-probability
  bucket (tail / head) and advantage sign, averaged over steps.
- ``plot_ratio_distribution``: the token importance ratio pi / pi_old met in the updates,
  per objective and advantage sign over training: median and 5-95% band (mean over seeds).
Runs whose configs differ only in seed and output directory are one group (one line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from maspo.run import Records, RunDir
from maspo.step_log import TRUST_RANGE

CURVE_PANELS = (  # (metrics key, title)
    ("eval/accuracy", "held-out accuracy"),
    ("reward", "training reward"),
    ("entropy", "entropy (nats/token)"),
    ("response_length", "response length (tokens)"),
    ("ratio/outside_trust", "update tokens with ratio outside [{:g}, {:g}]".format(*TRUST_RANGE)),
    ("dynamic/draws", "draws per step (dynamic sampling)"),
)
DRAWN_REWARD = "dynamic/reward_drawn"  # with dynamic sampling, the training reward drawn
PANELS = CURVE_PANELS + (
    ("obj/grad_util", "gradient utilisation"),
    ("obj/w_mean", "mean gradient weight"),
)
WEIGHT_GROUPS = (  # (obj/w_mean_<suffix>, bar label): tail q < LOG_TAIL, head q >= LOG_HEAD
    ("tail_pos", "tail, A > 0"),
    ("tail_neg", "tail, A < 0"),
    ("head_pos", "head, A > 0"),
    ("head_neg", "head, A < 0"),
)
BAND_ALPHA = 0.2  # opacity of the +/- 1 std band over seeds
RATIO_SIGNS = (("pos", "A > 0"), ("neg", "A < 0"))  # ratio/<sign>/qNN keys (maspo.trainer)
RATIO_GUIDES = (0.5, 1.0, 2.0)  # dashed lines: on-policy 1 and the [0.5, 2] range

def read_metrics(run_dir: Path) -> Records:
    return RunDir(run_dir).read_metrics()


def series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def run_label(run_dir: Path) -> str:
    """``objective[:param=value,...]`` from the run's saved config, else the folder name."""
    loss = RunDir(run_dir).config_dict().get("loss")
    if not loss:
        return Path(run_dir).name
    params = ",".join(f"{k}={v}" for k, v in (loss.get("params") or {}).items())
    return f"{loss.get('name', Path(run_dir).name)}" + (f":{params}" if params else "")


def group_runs(run_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """Runs by label; runs merge only when their configs differ in seed and output dir
    (another setting of the same objective gets its own line, labelled by its folder)."""
    by_setting: dict[str, list[Path]] = {}
    for run_dir in map(Path, run_dirs):
        config = RunDir(run_dir).config_dict()
        train = {k: v for k, v in config.get("train", {}).items()
                 if k not in ("seed", "output_dir")}
        setting = (json.dumps({**config, "train": train}, sort_keys=True, default=str)
                   if config else str(run_dir))
        by_setting.setdefault(setting, []).append(run_dir)
    labels = [run_label(dirs[0]) for dirs in by_setting.values()]
    return {(label if labels.count(label) == 1 else f"{label} ({dirs[0]})"): dirs
            for label, dirs in zip(labels, by_setting.values(), strict=True)}


def mean_band(runs: Sequence[Records], key: str) -> tuple[list[int], list[float], list[float]]:
    """(steps, mean, std) of ``key`` over runs at each step some run logged it (std with
    ddof 1 where 2+ runs have the step, else 0)."""
    by_step: dict[int, list[float]] = {}
    for records in runs:
        for step, value in zip(*series(records, key), strict=True):
            if isinstance(value, (int, float)) and math.isfinite(value):
                by_step.setdefault(step, []).append(float(value))
    steps = sorted(by_step)
    means, stds = [], []
    for step in steps:
        values = by_step[step]
        mean = sum(values) / len(values)
        var = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)
               if len(values) > 1 else 0.0)
        means.append(mean)
        stds.append(math.sqrt(var))
    return steps, means, stds


def activity_key(records: Records) -> str | None:
    """The first ``obj/<region>_frac`` key a run logged: its gate / clip / decay activity."""
    for record in records:
        for key in record:
            if key.startswith("obj/") and key.endswith("_frac"):
                return key
    return None


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _step_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _draw(ax, runs: Sequence[Records], key: str, label: str, color: Any) -> bool:
    steps, mean, std = mean_band(runs, key)
    if not steps:
        return False
    marker = "o" if key.startswith("eval") else None
    ax.plot(steps, mean, color=color, marker=marker, markersize=3,
            label=label + (f" (n={len(runs)})" if len(runs) > 1 else ""))
    if len(runs) > 1:
        ax.fill_between(steps, [m - s for m, s in zip(mean, std)],
                        [m + s for m, s in zip(mean, std)], color=color, alpha=BAND_ALPHA,
                        linewidth=0)
    return True


def save_figure(fig, out: Path) -> Path:
    """Lay ``fig`` out and write it to ``out`` (its folder made if needed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def _panels(groups: Mapping[str, Sequence[Records]], panels: Sequence[tuple[str, str]],
            out: Path, title: str, columns: int) -> Path:
    plt = pyplot()
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (key, name) in zip(axes.flat, panels, strict=False):
        key, name = panel_key(groups, key, name)
        for i, (label, runs) in enumerate(groups.items()):
            _draw(ax, runs, key, label, colors[i % len(colors)])
        ax.set_title(name)
        _step_axis(ax)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def panel_key(groups: Mapping[str, Sequence[Records]], key: str, name: str) -> tuple[str, str]:
    """The metric a panel draws, and its title: the training reward of runs with dynamic
    sampling is that of every completion drawn, not only of the kept groups."""
    if key == "reward" and any(DRAWN_REWARD in record for runs in groups.values()
                               for records in runs for record in records):
        return DRAWN_REWARD, f"{name} (every completion drawn)"
    return key, name


def _read_groups(groups: Mapping[str, Sequence[Path]]) -> dict[str, list[Records]]:
    return {label: [read_metrics(Path(d)) for d in dirs] for label, dirs in groups.items()}


def plot_run(run_dirs: Sequence[Path], out: Path, title: str | None = None) -> Path:
    """Training dynamics of every run in one 2x3 figure (one line per group of seeds)."""
    groups = _read_groups(group_runs([Path(d) for d in run_dirs]))
    runs = sum(len(v) for v in groups.values())
    return _panels(groups, PANELS, out, title or "maspo training run" + "s" * (runs > 1), 3)


def plot_learning_curves(groups: Mapping[str, Sequence[Path]], out: Path) -> Path:
    """Held-out accuracy, reward, entropy, length per objective: mean +/- std over seeds."""
    return _panels(_read_groups(groups), CURVE_PANELS, out,
                   "learning curves (mean ± std over seeds)", 2)


def plot_objective_activity(groups: Mapping[str, Sequence[Path]], out: Path) -> Path:
    """Left: each objective's gate/clip activity per step (mean +/- std over seeds).
    Right: mean gradient weight by old-probability bucket and advantage sign."""
    plt = pyplot()
    data = _read_groups(groups)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, (label, runs) in enumerate(data.items()):
        key = next(filter(None, map(activity_key, runs)), None)
        if key is not None:
            region = key.removeprefix("obj/").removesuffix("_frac")
            _draw(left, runs, key, f"{label} ({region})", colors[i % len(colors)])
    left.set_title("gate / clip activity (fraction of tokens in the region)")
    _step_axis(left)
    if left.has_data():
        left.legend(fontsize=8)

    width = 0.8 / max(len(data), 1)
    for i, (label, runs) in enumerate(data.items()):
        means, errs = [], []
        for suffix, _ in WEIGHT_GROUPS:
            per_run = [sum(v) / len(v) for v in (series(r, f"obj/w_mean_{suffix}")[1]
                                                 for r in runs) if v]
            mean = sum(per_run) / len(per_run) if per_run else math.nan
            std = (math.sqrt(sum((v - mean) ** 2 for v in per_run) / (len(per_run) - 1))
                   if len(per_run) > 1 else 0.0)
            means.append(mean)
            errs.append(std)
        x = [j + (i - (len(data) - 1) / 2) * width for j in range(len(WEIGHT_GROUPS))]
        right.bar(x, means, width, yerr=errs, capsize=2, label=label,
                  color=colors[i % len(colors)])
    right.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")  # on-policy w = r = 1
    right.set_xticks(range(len(WEIGHT_GROUPS)), [name for _, name in WEIGHT_GROUPS])
    right.set_title("mean gradient weight by old-probability bucket and advantage sign")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def plot_ratio_distribution(groups: Mapping[str, Sequence[Path]], out: Path) -> Path:
    """One panel per advantage sign: per objective, the median importance ratio of each
    step's update tokens and its 5-95% quantile band (each averaged over seeds), log scale.
    A run that logged no ratios (older runs) draws nothing."""
    plt = pyplot()
    data = _read_groups(groups)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(RATIO_SIGNS), figsize=(6.5 * len(RATIO_SIGNS), 4.5),
                             squeeze=False)
    for ax, (sign, name) in zip(axes.flat, RATIO_SIGNS, strict=True):
        drawn = False
        for i, (label, runs) in enumerate(data.items()):
            color = colors[i % len(colors)]
            steps, median, _ = mean_band(runs, f"ratio/{sign}/q50")
            if not steps:
                continue
            ax.plot(steps, median, color=color, label=label + (
                f" (n={len(runs)})" if len(runs) > 1 else ""))
            drawn = True
            low_steps, low, _ = mean_band(runs, f"ratio/{sign}/q05")
            high_steps, high, _ = mean_band(runs, f"ratio/{sign}/q95")
            if low_steps == steps == high_steps:
                ax.fill_between(steps, low, high, color=color, alpha=BAND_ALPHA, linewidth=0)
        for guide in RATIO_GUIDES:
            ax.axhline(guide, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_title(f"importance ratio pi/pi_old, {name} (median, 5-95% band)")
        _step_axis(ax)
        if drawn:
            ax.legend(fontsize=8)
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def plot_comparison(groups: Mapping[str, Sequence[Path]], out_dir: Path) -> dict[str, Path]:
    """A comparison's figures under ``out_dir``: learning_curves.png,
    objective_activity.png, ratios.png."""
    out_dir = Path(out_dir)
    return {"curves": plot_learning_curves(groups, out_dir / "learning_curves.png"),
            "activity": plot_objective_activity(groups, out_dir / "objective_activity.png"),
            "ratios": plot_ratio_distribution(groups, out_dir / "ratios.png")}
