"""Paired mechanism probes: what each objective's update does to one policy on one batch.

Per seed, one rollout (P prompts x G completions, drawn with dynamic sampling when the
config asks for it) is sampled from the starting policy and scored, and the old policy's
statistics are computed once. Then every objective starts from a copy of that same policy
and makes the K updates of ``maspo.update.policy_update`` on the same mini-batches in the
same order, so the objectives differ in nothing but their gradient weights. Measured (the
claims of MASPO, arXiv 2602.17550, that each probe tests):

- **gradient kept** (claim 1, soft gate): among the update's tokens whose ratio r lies
  outside the trust region (``maspo.step_log.TRUST_RANGE``, the one the trainer logs
  ``ratio/outside_trust`` with), the share with a non-zero gradient weight w (``kept_share``)
  and the share of the update's gradient mass sum |A w| they carry (``kept_mass``);
- **probability mass** (claim 2, mass-adaptive limiter): the mean change of log pi from
  pi_old to the updated policy on head (q > 0.9), middle and tail (q < 0.1) tokens, per
  advantage sign (``dlogp/<bucket>/<sign>``), q = pi_old(token);
- **signal reliability** (claim 3, asymmetric risk): the update's size, the mean
  |delta log pi|, on tokens of positive and of negative samples (``size_pos``,
  ``size_neg``) and their ratio (``size_ratio``), beside how much the risk controller
  widened or narrowed the gate on those tokens (``width_pos``, ``width_neg``: the gate
  width over the same objective's width without risk control, 1 for other objectives);
- **entropy under random rewards**: ``entropy_steps`` steps of training in which every
  completion's reward is a fair coin (the same coins for every objective), and the drift
  of the policy's entropy from the first step to the last (``entropy_drift``):
  asymmetric clipping alone sets its direction (arXiv 2509.26114).

Each claim is a contrast, an objective set against its own baseline (its ablation), seed
by seed (``maspo.paired``), with the direction the claim predicts; its verdict is
supported, contradicted, or cannot tell with the smallest difference the seeds could
detect. A seed whose update left no token outside the trust region is left out of the
gradient-kept measures (counted, never scored as 0).
Deviations: the update weight mass sum |A w| stands in for the gradient norm (it is the
size of d loss / d log pi per token, before the model's Jacobian).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maspo import advantages as adv_lib
from maspo.config import Config, resolved, to_dict
from maspo.errors import UserError
from maspo.losses import get_spec, make_params
from maspo.losses.maspo import log_gate_width
from maspo.objective_specs import Variant, parse_variant, study_label
from maspo.paired import BETTER, CANNOT_TELL, WORSE, PairedDifference, paired_difference
from maspo.parts import RunParts, TrainState
from maspo.paths import write_atomic, writing
from maspo.rollout.groups import Drawn
from maspo.step_log import TRUST_RANGE, Clock
from maspo.tables import markdown_table
from maspo.trackers import Destination, Trackers
from maspo.update import (
    Learner,
    OldPolicyStats,
    TokenRecord,
    UpdateResult,
    UpdateSettings,
    old_policy_stats,
    policy_update,
    rollout_logprobs,
    scoring_order,
)

HEAD, TAIL = 0.9, 0.1  # q = pi_old(token) above HEAD: head; below TAIL: tail
BUCKETS = ("head", "middle", "tail")
COIN_SEED_OFFSET = 7_777_777  # random-reward coins: seeded by (seed, step), apart from sampling
# a probe's paired verdict says which way a measure moved, not whether that is good
DIRECTION = {BETTER: "higher", WORSE: "lower", CANNOT_TELL: CANNOT_TELL}


# ---------------------------------------------------------------------------------------
# The measures, as functions of tensors.


def gradient_kept(weight: Tensor, log_ratio: Tensor, adv: Tensor, mask: Tensor,
                  trust: tuple[float, float] = TRUST_RANGE) -> dict[str, float]:
    """``kept_share`` and ``kept_mass`` of tokens (all (N,) or (b, t), ``adv`` broadcast
    per token) whose ratio is outside ``trust``; NaN when no token is outside."""
    ratio = log_ratio.double().exp()
    outside = mask & ((ratio < trust[0]) | (ratio > trust[1]))
    mass = (adv.double() * weight.double()).abs() * mask
    n = int(outside.sum())
    return {"outside_tokens": n, "outside_share": n / max(int(mask.sum()), 1),
            "kept_share": float((weight[outside] != 0).double().mean()) if n else float("nan"),
            "kept_mass": float(mass[outside].sum() / mass.sum()) if n and mass.sum() > 0
            else float("nan")}


def mass_change(delta: Tensor, q: Tensor, adv: Tensor, mask: Tensor) -> dict[str, float]:
    """Mean change of log pi per old-probability bucket and advantage sign
    (``dlogp/<bucket>/<pos|neg>``, bucket ``all`` for every token; NaN for an empty cell),
    and the mean |change| per sign (``size_pos``, ``size_neg``, ``size_ratio`` = pos / neg)."""
    buckets = {"all": torch.ones_like(mask), "head": q > HEAD,
               "middle": (q >= TAIL) & (q <= HEAD), "tail": q < TAIL}
    signs = {"pos": adv > 0, "neg": adv < 0}
    out: dict[str, float] = {}
    for bucket, in_bucket in buckets.items():
        for sign, has_sign in signs.items():
            cell = mask & in_bucket & has_sign
            out[f"dlogp/{bucket}/{sign}"] = (float(delta[cell].double().mean())
                                             if cell.any() else float("nan"))
    for sign, has_sign in signs.items():
        cell = mask & has_sign
        out[f"size_{sign}"] = (float(delta[cell].double().abs().mean()) if cell.any()
                               else float("nan"))
    out["size_ratio"] = out["size_pos"] / out["size_neg"] if out["size_neg"] else float("nan")
    return out


def risk_width(objective: Variant, old_logp: Tensor, adv: Tensor, mask: Tensor
               ) -> dict[str, float]:
    """How much the risk controller widens or narrows the gate: the mean over tokens of
    positive (``width_pos``) and negative (``width_neg``) samples of MASPO's gate width
    divided by the same objective's width without risk control; 1 for other objectives."""
    ones = {"width_pos": 1.0, "width_neg": 1.0}
    if objective.name != "maspo":
        return ones
    params = make_params("maspo", objective.params)
    plain = dataclasses.replace(params, risk_control=False)
    factor = (log_gate_width(old_logp, adv, params)
              - log_gate_width(old_logp, adv, plain)).double().exp()
    for sign, cell in (("pos", mask & (adv > 0)), ("neg", mask & (adv < 0))):
        ones[f"width_{sign}"] = float(factor[cell].mean()) if cell.any() else float("nan")
    return ones


def update_gradient_kept(result: UpdateResult) -> dict[str, float]:
    """``gradient_kept`` over every token the K updates computed."""
    tokens = TokenRecord.cat(result.tokens)
    if not len(tokens.weight):
        return {"outside_tokens": 0, "outside_share": float("nan"), "kept_share": float("nan"),
                "kept_mass": float("nan")}
    return gradient_kept(tokens.weight, tokens.log_ratio, tokens.advantage,
                         torch.ones_like(tokens.weight, dtype=torch.bool))


# ---------------------------------------------------------------------------------------
# One seed.


class Probe:
    """The parts of a run for one seed (``maspo.parts.RunParts``, as the trainer builds
    them); every objective starts from the starting policy's weights with its own learner."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.parts = RunParts.build(config)
        self.start = copy.deepcopy(self.parts.model.state_dict())
        self.base_settings = UpdateSettings.of(config)

    def learner(self, objective: Variant) -> tuple[Learner, UpdateSettings]:
        """The starting weights with a fresh optimizer, and the objective's settings."""
        self.parts.model.load_state_dict(self.start)
        learner = self.parts.learner(warmup_steps=0)  # every objective's K updates at full rate
        settings = dataclasses.replace(
            self.base_settings, objective=objective.name, params=objective.params,
            aggregation=self.config.loss.aggregation or get_spec(objective.name).aggregation)
        return learner, settings

    def rollout(self) -> tuple[Drawn, Tensor, OldPolicyStats]:
        """One scored rollout of the starting policy, its advantages and old statistics."""
        parts, state = self.parts, TrainState()
        stream, clock = parts.splits.train_slots(), Clock(parts.device)
        torch.manual_seed(parts.step_seed(1))
        if self.config.rollout.filter_groups:
            drawn, _ = parts.draw_untied(1, state, stream, clock)
        else:
            drawn = parts.draw(1, 0, state, stream, clock)
        if drawn is None:
            raise RuntimeError("no prompt group with unequal rewards was drawn")
        advantages = adv_lib.estimate(self.config.loss.advantage, drawn.rewards,
                                      drawn.rollout.group_size).to(parts.device)
        order = scoring_order(drawn.rollout, advantages, self.base_settings,
                              parts.step_seed(1))  # the rows of each update together
        with parts.precision():
            old = old_policy_stats(parts.learner(), drawn.rollout, self.base_settings, order)
        return drawn, advantages, old

    def update(self, objective: Variant, drawn: Drawn, advantages: Tensor,
               old: OldPolicyStats) -> dict[str, float]:
        """Gradient kept, mass change and update size of the objective's K updates."""
        learner, settings = self.learner(objective)
        rollout = drawn.rollout
        with self.parts.precision():
            result = policy_update(learner, rollout, old, advantages, settings,
                                   seed=self.parts.step_seed(1), bad_streak=0, step=1)
            learner.model.eval()
            new = rollout_logprobs(learner.model, rollout, settings)[0]  # (B, T)
        mask = rollout.completion_mask
        values = update_gradient_kept(result)
        adv = advantages[:, None].expand_as(mask) if advantages.dim() == 1 else advantages
        values.update(mass_change(new - old.logprobs, old.logprobs.exp(), adv, mask))
        values.update(risk_width(objective, old.logprobs, adv, mask))
        return values

    def entropy_drift(self, objective: Variant, steps: int) -> dict[str, float]:
        """Train ``steps`` steps on fair-coin rewards; the entropy's change over them."""
        parts = self.parts
        learner, settings = self.learner(objective)
        state, stream, entropies = TrainState(), parts.splits.train_slots(), []
        for step in range(1, steps + 1):
            clock = Clock(parts.device)
            torch.manual_seed(parts.step_seed(step))
            drawn = parts.draw(step, 0, state, stream, clock)
            coins = torch.Generator().manual_seed(
                self.config.train.seed * COIN_SEED_OFFSET + step)
            drawn.scores.reward = torch.randint(0, 2, (len(drawn.scores.reward),),
                                                generator=coins).float().tolist()
            entropies.append(
                parts.learn(learner, settings, step, state, drawn, clock)["entropy"])
        return {"entropy_first": entropies[0], "entropy_last": entropies[-1],
                "entropy_drift": entropies[-1] - entropies[0]}


def probe_seed(config: Config, objectives: Sequence[Variant],
               entropy_steps: int) -> dict[str, dict[str, float]]:
    """objective spec -> measures, for the seed of ``config``."""
    probe = Probe(config)
    drawn, advantages, old = probe.rollout()
    values = {o.spec: probe.update(o, drawn, advantages, old) for o in objectives}
    if entropy_steps:
        for o in objectives:
            values[o.spec].update(probe.entropy_drift(o, entropy_steps))
    return values


# ---------------------------------------------------------------------------------------
# Over seeds: tables and figures.

SHOWN = {  # (measure, what it shows) in table order
    "gradient kept": ["kept_share", "kept_mass", "outside_share"],
    "probability mass": [f"dlogp/{b}/{s}" for b in ("all", *BUCKETS) for s in ("pos", "neg")],
    "signal reliability": ["size_pos", "size_neg", "size_ratio", "width_pos", "width_neg"],
    "entropy under random rewards": ["entropy_first", "entropy_last", "entropy_drift"],
}
# a seed whose update left no token outside the trust region has nothing for the gradient-kept
# probe to measure: it is counted and left out of that probe, never scored as zero
GATE_MEASURES = frozenset(SHOWN["gradient kept"])
HIGHER, LOWER = "higher", "lower"
SUPPORTED, CONTRADICTED = "supported", "contradicted"


@dataclass(frozen=True)
class Contrast:
    """An objective set against its own baseline (specs as written in --objectives)."""

    objective: str
    baseline: str

    def __str__(self) -> str:
        return f"{self.objective} vs {self.baseline}"


@dataclass(frozen=True)
class Claim:
    """What a claim says a contrast does to one measure: objective - baseline is
    ``direction`` (higher or lower) than 0."""

    contrast: Contrast
    measure: str
    direction: str

    def __str__(self) -> str:
        return f"{self.contrast}: {self.measure} {self.direction}"


def parse_claim(text: str, variants: Sequence[Variant]) -> Claim:
    """``"OBJECTIVE vs BASELINE: MEASURE higher|lower"`` -> Claim, both sides among
    ``variants`` (matched as parsed, written as in ``variants``)."""
    form = "write 'OBJECTIVE vs BASELINE: MEASURE higher' (or lower)"
    pair, sep, said = text.rpartition(": ")
    sides = pair.split(" vs ")
    words = said.split()
    if not sep or len(sides) != 2 or len(words) != 2 or words[1] not in (HIGHER, LOWER):
        raise UserError(f"--claim {text!r} is not a claim; {form}")
    measure, direction = words
    known = [key for keys in SHOWN.values() for key in keys]
    if measure not in known:
        raise UserError(f"--claim {text!r}: unknown measure {measure!r}; known: "
                        f"{', '.join(known)}")
    by_slug = {v.slug: v.spec for v in variants}
    specs = []
    for side in sides:
        slug = parse_variant(side.strip()).slug
        if slug not in by_slug:
            raise UserError(f"--claim {text!r}: {side.strip()!r} is not one of --objectives "
                            f"({', '.join(by_slug.values())}); add it")
        specs.append(by_slug[slug])
    if specs[0] == specs[1]:
        raise UserError(f"--claim {text!r} sets an objective against itself")
    return Claim(Contrast(*specs), measure, direction)


def _usable(values: dict[str, float], key: str) -> float | None:
    """The seed's value of ``key``, or None when it has none (NaN, missing, or a
    gradient-kept measure of a seed with no token outside the trust region)."""
    value = values.get(key)
    if key in GATE_MEASURES and values.get("outside_tokens", 1) == 0:
        return None
    return value if _finite(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def contrast_difference(per_seed: dict[int, dict[str, dict[str, float]]],
                        contrast: Contrast, key: str) -> PairedDifference:
    """objective - baseline over the seeds where both have a value of ``key``."""
    pairs = [(_usable(v[contrast.objective], key), _usable(v[contrast.baseline], key))
             for v in per_seed.values()]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    return paired_difference([a for a, _ in pairs], [b for _, b in pairs])


def judge(diff: PairedDifference, direction: str) -> str:
    """supported / contradicted when the interval excludes 0 on the claimed / the other
    side; otherwise cannot tell, with the smallest difference the seeds could detect."""
    moved = DIRECTION[diff.verdict]
    if diff.n < 2:
        return f"{CANNOT_TELL} (fewer than 2 seeds)"
    if moved == CANNOT_TELL:
        return f"{CANNOT_TELL} (detectable +-{diff.detectable:.2g})"
    return SUPPORTED if moved == direction else CONTRADICTED


def _mean(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values):+.4f}" if values else "-"


def contrast_table(per_seed: dict[int, dict[str, dict[str, float]]], contrast: Contrast,
                   keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per measure, each side's mean, the paired difference with its 95%
    interval, the smallest difference the seeds could detect, and the seeds used."""
    header = ["measure", contrast.objective, contrast.baseline, "difference [95% CI]",
              "detectable", "seeds"]
    rows = []
    for key in keys:
        own, base = ([x for v in per_seed.values() if (x := _usable(v[spec], key)) is not None]
                     for spec in (contrast.objective, contrast.baseline))
        diff = contrast_difference(per_seed, contrast, key)
        rows.append([key, _mean(own), _mean(base), diff.shown(4),
                     f"{diff.detectable:.4f}" if diff.detectable == diff.detectable else "-",
                     f"{diff.n} of {len(per_seed)}"])
    return header, rows


def seed_counts(per_seed: dict[int, dict[str, dict[str, float]]]
                ) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per objective, the seeds whose update raised its positive samples'
    tokens and lowered its negative samples' (mean change of log pi), and the seeds left
    out of the gradient-kept probe (no token outside the trust region)."""
    n = len(per_seed)
    header = ["objective", "positive tokens rose", "negative tokens fell",
              "mean dlogp/all/pos", "mean dlogp/all/neg", "no token outside"]
    rows = []
    for objective in next(iter(per_seed.values())):
        values = [v[objective] for v in per_seed.values()]
        pos = [x for v in values if _finite(x := v.get("dlogp/all/pos"))]
        neg = [x for v in values if _finite(x := v.get("dlogp/all/neg"))]
        rows.append([objective, f"{sum(x > 0 for x in pos)} of {n}",
                     f"{sum(x < 0 for x in neg)} of {n}", _mean(pos), _mean(neg),
                     f"{sum(v.get('outside_tokens', 1) == 0 for v in values)} of {n}"])
    return header, rows


def write_probes(out: Path, record: dict[str, Any]) -> dict[str, Path]:
    """probes.json (``record``: the command, config, commit, contrasts, claims and every
    seed's values), then probes.md and one figure per probe, both drawn from that file."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "probes.json", "markdown": out / "probes.md"}
    paths["json"].write_text(json.dumps(record, indent=1) + "\n")
    saved = json.loads(paths["json"].read_text())
    per_seed = saved["seeds"]
    contrasts = [Contrast(**c) for c in saved["contrasts"]]
    claims = [Claim(Contrast(**c["contrast"]), c["measure"], c["direction"])
              for c in saved["claims"]]
    text = [f"# Mechanism probes\n\n`{saved['command']}`\n\nmaspo commit "
            f"`{saved['commit']}`; the resolved config is in probes.json. {len(per_seed)} "
            "seeds; each contrast is the objective's value minus its baseline's at the same "
            "seed: the mean, its 95% Student-t interval and the smallest difference the seeds "
            "could detect (80% power); a seed without a value (no token outside the trust "
            "region, for the gradient-kept measures) is left out of that measure. "
            "maspo.probes explains each measure.\n",
            "## Seeds\n\nPer objective: seeds whose update raised the mean log pi of "
            "positive-advantage tokens and lowered that of negative ones; seeds with no "
            f"update token outside [{TRUST_RANGE[0]:g}, {TRUST_RANGE[1]:g}] (left out of the "
            f"gradient-kept measures).\n\n{markdown_table(*seed_counts(per_seed))}\n"]
    if claims:
        rows = []
        for claim in claims:
            diff = contrast_difference(per_seed, claim.contrast, claim.measure)
            rows.append([str(claim.contrast), claim.measure, claim.direction, diff.shown(4),
                         f"{diff.detectable:.4f}" if diff.detectable == diff.detectable
                         else "-", str(diff.n), judge(diff, claim.direction)])
        header = ["contrast", "measure", "claimed", "difference [95% CI]", "detectable",
                  "seeds", "verdict"]
        text.append(f"## Claims\n\n{markdown_table(header, rows)}\n")
    present = {title: [k for k in keys if any(k in v for s in per_seed.values()
                                                for v in s.values())]
               for title, keys in SHOWN.items()}
    for contrast in contrasts:
        keys = [k for title_keys in present.values() for k in title_keys]
        table = markdown_table(*contrast_table(per_seed, contrast, keys))
        text.append(f"## {contrast}\n\n{table}\n")
    if claims:
        paths["claims"] = plot_claims(per_seed, claims, out / "claims.png")
    for title, keys in present.items():
        if keys:
            paths[title] = plot_probe(per_seed, keys, title,
                                      out / f"{title.replace(' ', '_')}.png")
    paths["markdown"].write_text("\n".join(text))
    return paths


def plot_probe(per_seed: dict[int, dict[str, dict[str, float]]], keys: Sequence[str],
               title: str, out: Path) -> Path:
    """One panel per measure: each objective's mean over seeds with the seeds as dots."""
    from maspo.plots import pyplot, save_figure

    plt = pyplot()
    seeds = sorted(per_seed)
    objectives = list(per_seed[seeds[0]])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 1, 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.axhline(0, color="black", linewidth=0.5)
        for i, objective in enumerate(objectives):
            values = [per_seed[s][objective].get(key) for s in seeds]
            values = [v for v in values if _finite(v)]
            color = colors[i % len(colors)]
            if values:
                ax.bar(i, sum(values) / len(values), color=color, alpha=0.4)
                ax.scatter([i] * len(values), values, s=8, color=color)
        ax.set_xticks(range(len(objectives)), objectives, rotation=60, ha="right",
                      fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def plot_claims(per_seed: dict[int, dict[str, dict[str, float]]], claims: Sequence[Claim],
                out: Path) -> Path:
    """One panel per claim: each seed's difference (objective - baseline), their mean with
    its 95% interval, and the verdict."""
    from maspo.plots import pyplot, save_figure

    plt = pyplot()
    cols = min(len(claims), 4)
    rows = -(-len(claims) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(claims):]:
        ax.axis("off")
    for ax, claim in zip(axes.flat, claims):
        c = claim.contrast
        diffs = [a - b for v in per_seed.values()
                 if (a := _usable(v[c.objective], claim.measure)) is not None
                 and (b := _usable(v[c.baseline], claim.measure)) is not None]
        diff = contrast_difference(per_seed, c, claim.measure)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.scatter([0] * len(diffs), diffs, s=10, alpha=0.6)
        if diff.n >= 2:
            ax.errorbar([0.3], [diff.mean], yerr=[[diff.mean - diff.low],
                                                  [diff.high - diff.mean]],
                        fmt="o", color="black", capsize=4)
        ax.set_xlim(-0.5, 0.8)
        ax.set_xticks([])
        ax.set_title(f"{c.objective}\nminus {c.baseline}\n{claim.measure} "
                     f"(claimed {claim.direction})\n{judge(diff, claim.direction)}",
                     fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("claims: per-seed differences, mean and 95% interval")
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def report_seed(config: Config, objectives: Sequence[Variant],
                values: dict[str, dict[str, float]], study: Path) -> None:
    """Each objective's measures at the seed of ``config`` as one run of the study (named
    as ``maspo compare`` names its runs) in every tracker of ``train.report_to``, at step 0;
    TensorBoard's events go to ``<study>/tensorboard/<run name>/``."""
    seed = config.train.seed
    for objective in objectives:
        label = study_label(study, objective.slug, seed)
        own = dataclasses.replace(  # the objective as Probe.learner sets it
            config, loss=dataclasses.replace(config.loss, name=objective.name,
                                             params=objective.params),
            train=dataclasses.replace(config.train, output_dir=None))
        trackers = Trackers(config.train.report_to, Destination(
            label, resolved(own), study / "tensorboard" / label.name, study))
        try:
            trackers.log({"step": 0, **values[objective.spec]})
        finally:
            trackers.close()


def run_probes(base: Config, objectives: Sequence[Variant], seeds: Sequence[int],
               entropy_steps: int, log: Callable[[str], Any] = print,
               cache: Path | None = None, study: Path | None = None
               ) -> dict[int, dict[str, dict[str, float]]]:
    """Every seed's measures (each seed a fresh rollout of the starting policy).

    With ``cache`` (a folder), each finished seed is saved there as ``seed-N.json`` with
    what it was probed with, and a rerun takes it from there instead of probing it again;
    a saved seed probed with another config, objectives or entropy steps is refused.
    With ``study`` (the output folder), each seed probed is reported to the trackers of
    ``train.report_to`` (``report_seed``; a saved seed was reported when it was probed).
    """
    per_seed = {}
    for seed in seeds:
        config = dataclasses.replace(base, train=dataclasses.replace(
            base.train, seed=seed, output_dir=None))  # a probe writes no run folder
        what = {"config": to_dict(config),
                "objectives": [o.spec for o in objectives], "entropy_steps": entropy_steps}
        saved = _saved_seed(cache, seed, what)
        if saved is not None:
            log(f"seed {seed}: probed before ({cache / f'seed-{seed}.json'})")
            per_seed[seed] = saved
            continue
        log(f"seed {seed}: probing {len(objectives)} objectives")
        per_seed[seed] = probe_seed(config, objectives, entropy_steps)
        if cache is not None:
            with writing(f"the probes of seed {seed} to {str(cache)!r}", "free some space "
                         "and run the same command again (saved seeds are not probed again)"):
                cache.mkdir(parents=True, exist_ok=True)
                write_atomic(cache / f"seed-{seed}.json", json.dumps(
                    {"probed_with": what, "values": per_seed[seed]}) + "\n")
        if study is not None:
            with writing(f"the trackers' files of seed {seed} in {str(study)!r}",
                         "free some space and run the same command again (a saved "
                         "seed is neither probed nor reported again)"):
                report_seed(config, objectives, per_seed[seed], study)
    return per_seed


def _with_defaults(saved: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with each key it lacks taken from ``defaults``, section by section."""
    filled = dict(saved)
    for key, default in defaults.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(default, dict) and isinstance(filled[key], dict) and key not in (
                "params", "task_settings", "fields"):  # free-form: as written
            filled[key] = _with_defaults(filled[key], default)
    return filled


def _saved_seed(cache: Path | None, seed: int, what: dict[str, Any]) -> dict | None:
    path = None if cache is None else cache / f"seed-{seed}.json"
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        probed_with, values = saved["probed_with"], saved["values"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{str(path)!r} is not a saved probe seed; delete it to probe "
                        "that seed again") from None
    if isinstance(probed_with, dict) and isinstance(probed_with.get("config"), dict):
        # a config key added to maspo since the seed was probed reads as its default
        probed_with = {**probed_with, "config": _with_defaults(
            probed_with["config"], json.loads(json.dumps(to_dict(Config()))))}
    if json.loads(json.dumps(what)) != probed_with:
        raise UserError(f"{str(path)!r} was probed with another config, objectives or "
                        "--entropy-steps; use another --out") from None
    return values
