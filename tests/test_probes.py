"""Mechanism probes: each measure against hand-computed values, and `maspo probe` end to end
on the tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from maspo.cli import main
from maspo.errors import UserError
from maspo.losses import policy_loss
from maspo.objective_specs import parse_variants
from maspo.paired import paired_difference
from maspo.probes import (
    Claim,
    Contrast,
    contrast_difference,
    gradient_kept,
    judge,
    mass_change,
    parse_claim,
    risk_width,
    seed_counts,
)
from maspo.testing import tiny_overrides

Q = 0.5  # pi_old of every token below
RATIOS = [1.0, 1.5, 0.5, 1.1]  # two of them outside [0.8, 1.2]


def _weights(name: str, ratios, q: float, adv: float, **params) -> torch.Tensor:
    old = torch.full((1, len(ratios)), math.log(q))
    logp = old + torch.log(torch.tensor([ratios]))
    mask = torch.ones_like(old, dtype=torch.bool)
    return policy_loss(name, logp, old, torch.tensor([adv]), mask, **params).weight


def _maspo_gate(r: float, q: float, adv: float, mass_adaptive: bool = True) -> float:
    """MASPO's w = F * r for a gated token with A > 0 (docs/objectives.md, defaults)."""
    mass = min(max(1.0 / q ** 0.3, 1.0), 10.0) if mass_adaptive else 1.0
    sigma = mass * min(max(1 + 0.03 * adv, 0.1), 10.0)
    return math.exp(-(r - 1) ** 2 / (2 * sigma ** 2)) * r


def test_a_token_past_the_clip_keeps_no_gradient_under_grpo_and_some_under_maspo():
    log_ratio = torch.log(torch.tensor(RATIOS))
    adv, mask = torch.ones(4), torch.ones(4, dtype=torch.bool)
    grpo = _weights("grpo", RATIOS, Q, 1.0)[0]
    maspo = _weights("maspo", RATIOS, Q, 1.0)[0]
    # grpo (A > 0): r = 1.5 is past 1 + 0.2, so w = 0; r = 0.5 is not clipped for A > 0
    assert grpo.tolist() == pytest.approx([1.0, 0.0, 0.5, 1.1])
    expected = [_maspo_gate(1.0, Q, 1), _maspo_gate(1.5, Q, 1), 0.5, _maspo_gate(1.1, Q, 1)]
    assert maspo.tolist() == pytest.approx(expected, rel=1e-5)
    g = gradient_kept(grpo, log_ratio, adv, mask)
    m = gradient_kept(maspo, log_ratio, adv, mask)
    assert g["outside_share"] == m["outside_share"] == 0.5
    assert g["kept_share"] == 0.5 and m["kept_share"] == 1.0
    assert g["kept_mass"] == pytest.approx(0.5 / 2.6)
    assert m["kept_mass"] == pytest.approx((expected[1] + 0.5) / sum(expected), rel=1e-5)
    inside = gradient_kept(grpo, torch.zeros(4), adv, mask)  # r = 1: nothing outside
    assert inside["outside_share"] == 0 and math.isnan(inside["kept_share"])


def test_a_tail_token_gets_a_wider_gate_with_the_mass_adaptive_limiter():
    q, r = 0.01, 3.0  # a tail token (q < 0.1) far past the trust region
    wide = _weights("maspo", [r], q, 1.0)[0, 0].item()
    narrow = _weights("maspo", [r], q, 1.0, mass_adaptive=False)[0, 0].item()
    assert wide == pytest.approx(_maspo_gate(r, q, 1), rel=1e-5)
    assert narrow == pytest.approx(_maspo_gate(r, q, 1, mass_adaptive=False), rel=1e-5)
    assert wide > 5 * narrow  # sigma 3.98 * 1.03 against 1.03: w 2.66 against 0.46
    head = _weights("maspo", [r], 0.95, 1.0)[0, 0].item()  # a head token: the gate is tight
    assert head == pytest.approx(_maspo_gate(r, 0.95, 1), rel=1e-5) and head < wide


def test_the_risk_width_is_the_gate_width_over_the_width_without_risk_control():
    # two positive samples (A = +1, +2) and one negative (A = -1), two tokens each
    adv = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0]])
    old = torch.log(torch.tensor([[0.5, 0.01], [0.9, 0.2], [0.3, 0.6]]))
    mask = torch.tensor([[True, True], [True, False], [True, True]])

    def width(spec):
        return risk_width(parse_variants([spec])[0], old, adv, mask)

    wide = width("maspo:beta_pos=0.5,beta_neg=0.5")
    # positives: 1 + 0.5 A on three unmasked tokens (1.5, 1.5, 2.0); the mass term cancels
    assert wide["width_pos"] == pytest.approx((1.5 + 1.5 + 2.0) / 3)
    assert wide["width_neg"] == pytest.approx(1 / 1.5)  # 1 / (1 - 0.5 A)
    paper = width("maspo")  # beta 0.03: a few percent
    assert paper["width_pos"] == pytest.approx((1.03 + 1.03 + 1.06) / 3)
    assert paper["width_neg"] == pytest.approx(1 / 1.03)
    for spec in ("maspo:risk_control=false", "grpo", "dgpo"):
        assert width(spec) == {"width_pos": 1.0, "width_neg": 1.0}


def test_mass_change_by_bucket_and_sign_matches_a_hand_count():
    q = torch.tensor([[0.95, 0.5, 0.05, 0.99], [0.95, 0.5, 0.05, 0.02]])
    delta = torch.tensor([[0.1, 0.2, 0.4, 0.3], [-0.1, -0.3, -0.5, 9.0]])
    adv = torch.tensor([[1.0] * 4, [-1.0] * 4])
    mask = torch.tensor([[True] * 4, [True, True, True, False]])  # the 9.0 is padding
    out = mass_change(delta, q, adv, mask)
    assert out["dlogp/head/pos"] == pytest.approx(0.2)  # (0.1 + 0.3) / 2
    assert out["dlogp/middle/pos"] == pytest.approx(0.2)
    assert out["dlogp/tail/pos"] == pytest.approx(0.4)
    assert out["dlogp/head/neg"] == pytest.approx(-0.1)
    assert out["dlogp/tail/neg"] == pytest.approx(-0.5)
    assert out["dlogp/all/pos"] == pytest.approx(0.25)  # every unmasked token of a sign
    assert out["dlogp/all/neg"] == pytest.approx(-0.3)
    assert out["size_pos"] == pytest.approx(0.25) and out["size_neg"] == pytest.approx(0.3)
    assert out["size_ratio"] == pytest.approx(0.25 / 0.3)


def test_a_seed_with_no_token_outside_the_trust_region_is_left_out_not_scored_zero():
    def seed(kept_a, kept_b, outside):
        return {"a": {"kept_mass": kept_a, "outside_share": outside / 100,
                      "outside_tokens": outside, "dlogp/all/pos": 0.1, "dlogp/all/neg": -0.1},
                "b": {"kept_mass": kept_b, "outside_share": outside / 100,
                      "outside_tokens": outside, "dlogp/all/pos": -0.2,
                      "dlogp/all/neg": 0.3}}
    per_seed = {0: seed(0.5, 0.2, 7), 1: seed(0.6, 0.2, 9), 2: seed(0.4, 0.3, 5),
                3: seed(math.nan, math.nan, 0)}
    contrast = Contrast("a", "b")
    kept = contrast_difference(per_seed, contrast, "kept_mass")
    assert kept.n == 3 and kept.mean == pytest.approx((0.3 + 0.4 + 0.1) / 3)
    outside = contrast_difference(per_seed, contrast, "outside_share")
    assert outside.n == 3  # seed 3's outside_share of 0 is not a value of the probe
    assert math.isfinite(kept.low) and math.isfinite(kept.detectable)
    header, rows = seed_counts(per_seed)
    assert rows == [["a", "4 of 4", "4 of 4", "+0.1000", "-0.1000", "1 of 4"],
                    ["b", "0 of 4", "0 of 4", "-0.2000", "+0.3000", "1 of 4"]]


def test_a_claim_is_judged_by_which_side_of_zero_its_interval_lies():
    up = paired_difference([1.0, 1.2, 1.1], [0.0, 0.1, 0.0])
    assert judge(up, "higher") == "supported" and judge(up, "lower") == "contradicted"
    unclear = paired_difference([1.0, -1.0, 0.5], [0.0, 0.0, 0.0])
    assert judge(unclear, "higher") == f"cannot tell (detectable +-{unclear.detectable:.2g})"
    assert judge(paired_difference([1.0], [0.0]), "higher") == \
        "cannot tell (fewer than 2 seeds)"


def test_a_claim_names_two_of_the_objectives_a_measure_and_a_direction():
    variants = parse_variants(["grpo,maspo:alpha=0.6,maspo:mass_adaptive=false"])
    claim = parse_claim("maspo:alpha=0.6 vs maspo:mass_adaptive=false: dlogp/tail/pos higher",
                        variants)
    assert claim == Claim(Contrast("maspo:alpha=0.6", "maspo:mass_adaptive=false"),
                          "dlogp/tail/pos", "higher")
    for text, says in [
            ("maspo vs grpo: kept_mass higher", "'maspo' is not one of --objectives"),
            ("grpo vs grpo: kept_mass lower", "sets an objective against itself"),
            ("maspo:alpha=0.6 vs grpo: kept_gradient higher", "unknown measure 'kept_gradient'"),
            ("maspo:alpha=0.6 vs grpo: kept_mass up", "is not a claim"),
            ("maspo:alpha=0.6 grpo: kept_mass higher", "is not a claim")]:
        with pytest.raises(UserError, match=says):
            parse_claim(text, variants)


def _probe_argv(model_dir, out, seeds: str, entropy_steps: int) -> list[str]:
    return ["probe", "--objectives", "grpo,maspo", "--seeds", seeds, "--out", str(out),
            "--entropy-steps", str(entropy_steps), *tiny_overrides(model_dir, **{
                "optim.updates_per_step": 2, "rollout.prompts_per_step": 2})]


def test_probe_command_pairs_objectives_on_one_policy(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    argv = _probe_argv(tiny_model_dir, out, "0,1", 2)
    assert main(argv) == 0
    saved = json.loads((out / "probes.json").read_text())
    assert saved["command"].startswith("maspo probe ")
    assert saved["contrasts"] == [{"objective": "maspo", "baseline": "grpo"}]
    assert saved["config"]["optim"]["updates_per_step"] == 2  # the resolved config
    assert saved["config"]["model"]["path"] == str(tiny_model_dir)
    assert len(saved["commit"].removesuffix("+dirty")) == 40
    assert sorted(saved["seeds"]) == ["0", "1"]
    for seed in saved["seeds"].values():
        assert set(seed) == {"grpo", "maspo"}
        for values in seed.values():
            assert {"kept_share", "kept_mass", "outside_tokens", "dlogp/head/pos",
                    "dlogp/all/pos", "size_ratio", "entropy_drift"} <= set(values)
        if seed["maspo"]["outside_share"] > 0:  # the soft gate never zeroes a token
            assert seed["maspo"]["kept_share"] == 1.0
            assert seed["grpo"]["kept_share"] <= 1.0
    text = (out / "probes.md").read_text()
    assert "## Seeds" in text and "## maspo vs grpo" in text and "## Claims" not in text
    for title in ("gradient kept", "probability mass", "signal reliability",
                  "entropy under random rewards"):
        assert (out / f"{title.replace(' ', '_')}.png").read_bytes()[:4] == b"\x89PNG"
    assert "| entropy_drift " in capsys.readouterr().out

    # every finished seed is saved: a rerun with one more seed probes only that one, and
    # the first two seeds' values come back unchanged
    assert sorted(p.name for p in (out / "seeds").iterdir()) == ["seed-0.json", "seed-1.json"]
    more = [a if a != "0,1" else "0,1,2" for a in argv]
    assert main(more) == 0
    printed = capsys.readouterr().out
    assert printed.count("probed before") == 2 and "seed 2: probing 2 objectives" in printed
    again = json.loads((out / "probes.json").read_text())["seeds"]
    assert again["0"] == saved["seeds"]["0"] and again["1"] == saved["seeds"]["1"]
    assert set(again["2"]) == {"grpo", "maspo"}


def test_a_saved_seed_of_another_probe_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    base = _probe_argv(tiny_model_dir, out, "0", 0)
    assert main(base) == 0
    kept = (out / "seeds" / "seed-0.json").read_text()
    assert main([*base, "optim.lr=3e-4"]) == 2
    assert "seed-0.json' was probed with another config, objectives or --entropy-steps; " \
        "use another --out" in capsys.readouterr().err
    assert (out / "seeds" / "seed-0.json").read_text() == kept  # nothing overwritten


def test_each_claim_gets_a_verdict_and_a_claim_on_no_objective_stops_before_probing(
        tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    argv = _probe_argv(tiny_model_dir, out, "0,1", 0)
    assert main([*argv, "--claim", "maspo vs dgpo: kept_mass higher"]) == 2
    assert "'dgpo' is not one of --objectives (grpo, maspo); add it" in capsys.readouterr().err
    assert not out.exists()  # refused before any probing

    assert main([*argv, "--claim", "maspo vs grpo: size_pos higher"]) == 0
    saved = json.loads((out / "probes.json").read_text())
    assert saved["claims"] == [{"contrast": {"objective": "maspo", "baseline": "grpo"},
                                "measure": "size_pos", "direction": "higher"}]
    per_seed = saved["seeds"]
    diff = contrast_difference(per_seed, Contrast("maspo", "grpo"), "size_pos")
    assert diff.n == 2
    row = [line for line in (out / "probes.md").read_text().splitlines()
           if line.startswith("| maspo vs grpo | size_pos")]
    assert len(row) == 1 and f"| {judge(diff, 'higher')} |" in row[0]
    assert diff.shown(4) in row[0]
    assert (out / "claims.png").read_bytes()[:4] == b"\x89PNG"


def test_claims_between_ablations_need_no_grpo_but_a_named_baseline_must_be_compared(
        tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    argv = _probe_argv(tiny_model_dir, out, "0,1", 0)
    argv[argv.index("grpo,maspo")] = "maspo:risk_control=false,maspo"
    assert main([*argv, "--baseline", "grpo"]) == 2  # named, not compared: refused
    assert "--baseline 'grpo' is not one of --objectives" in capsys.readouterr().err
    assert not out.exists()
    claim = "maspo vs maspo:risk_control=false: width_pos higher"
    assert main([*argv, "--claim", claim]) == 0
    [row] = [line for line in (out / "probes.md").read_text().splitlines()
             if line.startswith("| maspo vs maspo:risk_control=false | width_pos")]
    assert "| higher " in row
    seeds = json.loads((out / "probes.json").read_text())["seeds"]
    for values in seeds.values():  # 1 + 0.03 A > 1 on every positive token
        assert values["maspo"]["width_pos"] > 1 == values["maspo:risk_control=false"]["width_pos"]


def test_a_seed_saved_before_a_config_key_existed_is_taken_with_its_default(
        tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    argv = _probe_argv(tiny_model_dir, out, "0", 0)
    assert main(argv) == 0
    path = out / "seeds" / "seed-0.json"
    saved = json.loads(path.read_text())
    del saved["probed_with"]["config"]["train"]["report_to"]  # as an older maspo wrote it
    path.write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(argv) == 0
    assert "seed 0: probed before" in capsys.readouterr().out
    saved["probed_with"]["config"]["optim"]["lr"] = 1.0  # a key it has, changed: refused
    path.write_text(json.dumps(saved))
    assert main(argv) == 2
    assert "was probed with another config" in capsys.readouterr().err
