"""Gradient-weight curves and profiles of every objective on synthetic tensors.

`maspo objectives` prints, for each registered objective, the weight profile that
`policy_loss` reports on one synthetic off-policy batch, and draws w(r) for positive and
negative advantages at a head and a tail old probability (a PNG).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from maspo.losses import names, policy_loss

CURVE_PROBS = (0.9, 0.01)  # old probabilities drawn: a head token and a tail token
PROFILE_KEYS = ("w_mean_pos", "w_mean_neg", "w_mean_tail", "w_mean_head", "grad_util")


def synthetic_batch(b: int = 256, t: int = 128, seed: int = 0, spread: float = 0.3):
    """An off-policy-looking batch: old probs spread over (0, 1], log-ratios ~ N(0, spread)."""
    g = torch.Generator().manual_seed(seed)
    old = torch.log(torch.rand(b, t, generator=g).pow(3).clamp(min=1e-6))  # many tail tokens
    logp = old + spread * torch.randn(b, t, generator=g)
    adv = torch.randn(b, generator=g)
    return logp, old, adv, torch.ones(b, t, dtype=torch.bool)


def weight_curve(name: str, ratios: torch.Tensor, adv: float, old_prob: float) -> torch.Tensor:
    """w(r) for one advantage and old probability (each ratio is its own completion)."""
    old = torch.full((len(ratios), 1), math.log(old_prob), dtype=torch.float64)
    logp = old + torch.log(ratios.double())[:, None]
    out = policy_loss(name, logp, old, torch.full((len(ratios),), adv, dtype=torch.float64),
                      torch.ones_like(logp, dtype=torch.bool))
    return out.weight[:, 0]


def profile_table(objectives: list[str] | None = None) -> str:
    """A text table of the weight profile of each objective on the synthetic batch."""
    batch = synthetic_batch()
    header = f"{'objective':<12}" + "".join(f"{k.replace('w_mean_', 'w '):>12}"
                                            for k in PROFILE_KEYS) + f"{'region frac':>14}"
    lines = [header]
    for name in objectives or names():
        metrics = policy_loss(name, *batch).metrics
        region = next((k for k in metrics if k.endswith("_frac")), None)
        cells = "".join(f"{metrics[k].item():12.3f}" for k in PROFILE_KEYS)
        tail = f"{metrics[region].item():9.3f} {region[:-5]}" if region else ""
        lines.append(f"{name:<12}{cells}  {tail}")
    return "\n".join(lines)


def plot_curves(path: Path, objectives: list[str] | None = None) -> Path:
    """Draw w(r) per objective: columns = sign of A, rows = head / tail old probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = torch.logspace(math.log10(0.2), math.log10(5.0), 400)
    objectives = objectives or names()
    colors = plt.get_cmap("tab20")(range(len(objectives)))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for row, q in enumerate(CURVE_PROBS):
        for col, adv in enumerate((1.0, -1.0)):
            ax = axes[row][col]
            for name, color in zip(objectives, colors, strict=True):
                headline = name in ("maspo", "dgpo")
                ax.plot(ratios, weight_curve(name, ratios, adv, q), label=name, color=color,
                        linewidth=2.6 if headline else 1.2, zorder=3 if headline else 2)
            ax.set_xscale("log")
            ax.set_xticks([0.25, 0.5, 1, 2, 4], ["0.25", "0.5", "1", "2", "4"])
            ax.minorticks_off()
            ax.set_title(f"A {'> 0' if adv > 0 else '< 0'}, old prob q = {q}")
            ax.set_xlabel("ratio r = pi / pi_old")
            ax.set_ylabel("gradient weight w")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, ncol=2)
    fig.suptitle("Per-token gradient weight of each objective (d loss / d log pi = -A w)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
