"""Statistics over synthetic result tables with planted effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sandbox import stats
from sandbox.stats import (
    bootstrap_mean,
    deal_rates,
    episode_level,
    matched_differences,
    min_pairs,
    paired_comparisons,
    summarise,
    wilcoxon_p,
    wilson,
)


def synthetic(effects: dict[str, float], deal_p: dict[str, float], cells: int = 40, seed: int = 0) -> pd.DataFrame:
    """One row per episode x judge (two judges), strategies differing by planted amounts."""
    rng = np.random.default_rng(seed)
    rows = []
    for cell in range(cells):
        cell_effect = rng.normal(0, 0.5)  # prospect/seed difficulty shared by every strategy in the cell
        for strategy, effect in effects.items():
            deal = bool(rng.random() < deal_p[strategy])
            for judge in ("j1", "j2"):
                rows.append(
                    {
                        "episode_id": f"{strategy}-{cell}",
                        "strategy": strategy,
                        "prospect": f"p{cell % 4}",
                        "scenario": "s",
                        "seed": cell,
                        "opener": "rep",
                        "rep_model": "m",
                        "prospect_model": "m",
                        "status": "ok",
                        "m_deal": deal,
                        "judge_model": judge,
                        "score_mean": 3 + effect + cell_effect + rng.normal(0, 0.3),
                    }
                )
    return pd.DataFrame(rows)


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert all(np.isnan(wilson(0, 0)))


def test_bootstrap_mean_interval():
    mean, low, high = bootstrap_mean([2.0] * 5)
    assert mean == low == high == 2.0
    rng = np.random.default_rng(1)
    mean, low, high = bootstrap_mean(rng.normal(10, 1, 200).tolist())
    assert low < 10 < high and high - low < 0.5


def test_episode_level_averages_judges():
    frame = synthetic({"a": 0.0}, {"a": 0.5}, cells=3)
    episodes = episode_level(frame)
    assert len(episodes) == 3
    first = frame[frame["episode_id"] == "a-0"]["score_mean"].mean()
    assert episodes.set_index("episode_id").loc["a-0", "score_mean"] == pytest.approx(first)


def test_paired_comparison_recovers_a_planted_effect_and_corrects_for_multiplicity():
    frame = synthetic({"base": 0.0, "better": 1.0, "same": 0.0}, {"base": 0.3, "better": 0.8, "same": 0.3})
    table = paired_comparisons(frame, ["score_mean", "m_deal"], baseline="base").set_index(["strategy", "metric"])
    better = table.loc[("better", "score_mean")]
    assert better["n_pairs"] == 40
    assert better["ci_low"] < 1.0 < better["ci_high"] and better["p"] < 1e-6
    same = table.loc[("same", "score_mean")]
    assert same["ci_low"] < 0 < same["ci_high"] and same["p"] > 0.01
    assert (table["p_holm"] >= table["p"]).all()
    assert "base" not in table.index.get_level_values("strategy")


def test_matched_differences_pair_on_everything_but_strategy():
    frame = episode_level(synthetic({"a": 0.0, "b": 2.0}, {"a": 0.5, "b": 0.5}, cells=5))
    frame = frame[frame["seed"] != 3]  # b's cell 3 missing for a: it is dropped, not mismatched
    diffs = matched_differences(frame, "score_mean", "b", "a")
    assert len(diffs) == 4


def test_wilcoxon_with_no_differences_is_no_evidence():
    assert wilcoxon_p([0.0] * 8) == (1.0, None)  # enough pairs, none differs: tested, nothing found


def test_too_few_pairs_give_no_p_value_and_say_why():
    assert min_pairs(0.05) == 6 and min_pairs(0.01) == 8
    p, why = wilcoxon_p([])
    assert np.isnan(p) and why == "no matched pairs"
    p, why = wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0])  # all one way, yet the smallest possible p is 2/2**5
    assert np.isnan(p) and why == "too few pairs: 5"
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == (pytest.approx(2 / 2**6), None)


def test_comparisons_without_enough_pairs_have_no_p_and_stay_out_of_the_holm_family():
    frame = synthetic({"base": 0.0, "better": 1.0}, {"base": 0.3, "better": 0.8}, cells=20)
    lonely = frame[(frame["strategy"] == "base") & (frame["seed"] == 0)].assign(
        strategy="lonely", seed=99, episode_id="l"
    )
    pair = frame[(frame["strategy"] == "base") & (frame["seed"] == 1)].assign(strategy="one-pair", episode_id="o")
    table = paired_comparisons(pd.concat([frame, lonely, pair]), ["score_mean"], baseline="base")
    table = table.set_index("strategy")
    assert table.loc["lonely", "n_pairs"] == 0 and table.loc["one-pair", "n_pairs"] == 1
    for strategy, why in (("lonely", "no matched pairs"), ("one-pair", "too few pairs: 1")):
        row = table.loc[strategy]
        assert np.isnan(row["p"]) and np.isnan(row["p_holm"]) and row["p_note"] == why
        assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])  # one difference is no interval either
    assert not np.isnan(table.loc["one-pair", "effect"])
    better = table.loc["better"]
    assert better["p_holm"] == better["p"] and pd.isna(better["p_note"])  # a family of one tested comparison


def test_summaries_and_deal_rates_per_strategy():
    frame = synthetic({"a": 0.0, "b": 1.0}, {"a": 0.0, "b": 1.0}, cells=10)
    rates = deal_rates(frame).set_index("strategy")
    assert rates.loc["a", "rate"] == 0 and rates.loc["b", "rate"] == 1 and rates.loc["b", "n"] == 10
    assert rates.loc["b", "ci_low"] < 1 and rates.loc["a", "ci_high"] > 0  # Wilson never collapses to a point
    summary = summarise(frame, ["score_mean"]).set_index("strategy")
    assert summary.loc["b", "mean"] > summary.loc["a", "mean"] and summary.loc["a", "n"] == 10


def test_mixed_effects_model_recovers_the_planted_effect():
    from sandbox.stats import mixed_effects

    frame = synthetic({"base": 0.0, "better": 1.0}, {"base": 0.3, "better": 0.8}, cells=40)
    table = mixed_effects(frame, "score_mean", baseline="base").set_index("strategy")
    better = table.loc["better"]
    assert better["ci_low"] < 1.0 < better["ci_high"]
    assert better["p"] < 1e-6


def test_mean_rank_puts_the_known_better_strategy_first():
    from sandbox.stats import mean_ranks

    frame = synthetic({"worst": -1.0, "base": 0.0, "best": 1.0}, {"worst": 0.2, "base": 0.5, "best": 0.8})
    ranks = mean_ranks(frame, "score_mean")
    assert ranks["strategy"].tolist() == ["best", "base", "worst"]
    assert ranks.iloc[0]["ci_high"] < ranks.iloc[1]["ci_low"]


def test_judge_agreement_is_high_for_agreeing_judges_and_low_for_noise():
    from sandbox.stats import judge_agreement

    rng = np.random.default_rng(3)
    rows = []
    for episode in range(60):
        truth = int(rng.integers(1, 6))
        rows.append({"episode_id": episode, "judge_model": "a", "score_x": truth, "score_y": int(rng.integers(1, 6))})
        rows.append({"episode_id": episode, "judge_model": "b", "score_x": truth, "score_y": int(rng.integers(1, 6))})
    table = judge_agreement(pd.DataFrame(rows)).set_index("criterion")
    assert table.loc["x", "alpha"] == pytest.approx(1.0)
    assert abs(table.loc["y", "alpha"]) < 0.3
    assert table.loc["x", "episodes"] == 60 and table.loc["x", "judges"] == 2


COVERAGE_BAND = (0.90, 0.99)  # 0.95 -3.2 / +2.6 binomial sd at 200 intervals


def test_bootstrap_intervals_cover_planted_effects_about_95_percent_of_the_time(monkeypatch):
    """Repeated simulated experiments with a known paired effect: how often does the 95% CI cover it?

    And the check's power: intervals from the same differences at 80% or 99.9%, read as 95%, fail it.
    Only intervals are checked, so no p-values are computed (statsmodels' Holm correction runs a full
    garbage collection on every call: most of the time of this loop).
    """
    true_effect, repetitions = 0.6, 200
    differences = []
    bootstrap = stats.bootstrap_mean

    def recording(values, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        differences.append(values)
        return bootstrap(values, *args, **kwargs)

    monkeypatch.setattr(stats, "bootstrap_mean", recording)
    monkeypatch.setattr(stats, "wilcoxon_p", lambda differences, alpha=stats.ALPHA: (np.nan, "not computed"))
    covered = 0
    for rep in range(repetitions):
        frame = synthetic({"base": 0.0, "better": true_effect}, {"base": 0.5, "better": 0.5}, cells=30, seed=rep)
        row = paired_comparisons(frame, ["score_mean"], baseline="base").iloc[0]
        covered += row["ci_low"] <= true_effect <= row["ci_high"]
    coverage = covered / repetitions
    print(f"paired-effect 95% CI coverage over {repetitions} simulated runs: {coverage:.3f}")
    assert len(differences) == repetitions
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1]
    for confidence in (0.80, 0.999):
        intervals = [bootstrap(values, confidence=confidence)[1:] for values in differences]
        wrong = sum(low <= true_effect <= high for low, high in intervals) / repetitions
        print(f"  the same differences at {confidence:.1%}: coverage {wrong:.3f}")
        assert not COVERAGE_BAND[0] <= wrong <= COVERAGE_BAND[1]


def test_rates_of_a_true_false_column_with_wilson_intervals_leave_unmeasured_episodes_out():
    frame = synthetic({"a": 0.0, "b": 1.0}, {"a": 0.0, "b": 1.0}, cells=10)
    frame["m_flag"] = pd.array([s == "b" for s in frame["strategy"]], dtype="boolean")
    frame.loc[frame["episode_id"] == "a-0", "m_flag"] = pd.NA  # recorded before the metric existed
    frame.loc[frame["episode_id"] == "b-1", "status"] = "failed"  # failed: not an outcome
    rates = stats.rates(frame, ["m_flag", "m_deal"]).set_index(["strategy", "measure"])
    a, b = rates.loc[("a", "m_flag")], rates.loc[("b", "m_flag")]
    assert (a["n"], a["k"], b["n"], b["k"]) == (9, 0, 9, 9)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx(wilson(9, 9)) and b["ci_low"] < 1
    assert rates.loc[("a", "m_deal"), "n"] == 10
