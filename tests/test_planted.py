"""Planted effects through the whole pipeline: fake provider -> runner -> judge -> table -> stats."""

from __future__ import annotations

import functools
import math

import pandas as pd
import pytest

from sandbox import stats
from sandbox.experiment import ExperimentSpec
from sandbox.judge import load_rubric
from sandbox.runner import run
from sandbox.table import results_frame
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider
from tests.planted import DEAL_P, QUALITY, responder

BASELINE = "eager-to-please"


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-planted-not-a-real-key")


def planted_run(catalog, folder, api_base: str, seeds: int, prospects: list[str], rubric=None):  # noqa: ANN001, ANN201
    model = {"model": "openai/planted", "api_base": api_base}
    spec = ExperimentSpec(
        id="planted",
        strategies=list(QUALITY),
        prospects=prospects,
        scenarios=["saas-seats"],
        seeds=seeds,
        max_turns=2,
        models={"rep": model, "prospect": model, "judge": model},
        concurrency=16,
        baseline=BASELINE,
    )
    rubric = rubric or load_rubric(ROOT / "judges" / "rubric.yaml")
    run(spec, catalog, rubric, folder=folder, report=False)
    return results_frame(folder)


def interval_checks(frame) -> tuple[int, int, bool]:  # noqa: ANN001
    """(covered, checked, best ranked first) for one simulated run."""
    covered = checked = 0
    means = stats.summarise(frame, ["score_mean"]).set_index("strategy")
    rates = stats.deal_rates(frame).set_index("strategy")
    for strategy, quality in QUALITY.items():
        covered += means.loc[strategy, "ci_low"] <= quality <= means.loc[strategy, "ci_high"]
        covered += rates.loc[strategy, "ci_low"] <= DEAL_P[quality] <= rates.loc[strategy, "ci_high"]
        checked += 2
    effects = stats.paired_comparisons(frame, ["score_mean"], BASELINE).set_index("strategy")
    for strategy in effects.index:
        truth = QUALITY[strategy] - QUALITY[BASELINE]
        covered += effects.loc[strategy, "ci_low"] <= truth <= effects.loc[strategy, "ci_high"]
        checked += 1
    ranks = stats.mean_ranks(frame, "score_mean")
    return covered, checked, ranks.iloc[0]["strategy"] == "assertive-consultant"


def test_pipeline_recovers_planted_effects(catalog, tmp_path):
    with FakeProvider(responder({k: catalog.strategy(k).summary for k in QUALITY})) as provider:
        frame = planted_run(
            catalog, tmp_path / "run", provider.api_base, seeds=10, prospects=["price-haggler", "skeptic"]
        )
    assert len(frame) == 60 and (frame["status"] == "ok").all()
    ranks = stats.mean_ranks(frame, "score_mean")
    assert ranks["strategy"].tolist() == ["assertive-consultant", "humble-equal", "eager-to-please"]
    effects = stats.paired_comparisons(frame, ["score_mean", "m_deal"], BASELINE).set_index(["strategy", "metric"])
    best = effects.loc[("assertive-consultant", "score_mean")]
    assert best["ci_low"] <= 2 <= best["ci_high"] and best["p_holm"] < 0.01
    covered, checked, best_first = interval_checks(frame)
    assert best_first and covered >= checked - 1


# The coverage simulation: RUNS simulated experiments of SEEDS seeds each (3 strategies x 1 prospect),
# 8 intervals each (3 mean scores, 3 deal rates, 2 paired effects): 200 intervals, as many as the 25
# separate runs it replaces. They come from one pipeline run over RUNS x SEEDS seeds, cut into blocks of
# SEEDS seeds (draws hash the seed, so blocks are independent), judged on the rubric's first two
# criteria: the judge's calls are most of the work, and two criteria still make score_mean an average.
# (A rubric file needs 8 to 12 criteria; this cut is made in memory, for the simulation only.)
RUNS, SEEDS, CRITERIA = 25, 12, 2


# Nominal 0.95 -3.2 / +2.6 binomial sd at 200 intervals: 80% or 99.9% intervals fall outside (tested below).
BAND = (0.90, 0.99)


@pytest.fixture(scope="module")
def simulated_runs(catalog, tmp_path_factory) -> list[pd.DataFrame]:
    """The RUNS simulated experiments' tables, made once for the tests that read them."""
    rubric = load_rubric(ROOT / "judges" / "rubric.yaml")
    rubric = rubric.model_copy(update={"criteria": rubric.criteria[:CRITERIA]})
    folder = tmp_path_factory.mktemp("planted") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "sk-test-planted-not-a-real-key")
        with FakeProvider(responder({k: catalog.strategy(k).summary for k in QUALITY})) as provider:
            frame = planted_run(
                catalog, folder, provider.api_base, seeds=RUNS * SEEDS, prospects=["skeptic"], rubric=rubric
            )
    assert len(frame) == RUNS * SEEDS * len(QUALITY) and (frame["status"] == "ok").all()
    assert set(frame.filter(like="score_").columns) == {"score_mean"} | {f"score_{c.id}" for c in rubric.criteria}
    blocks = [frame[(frame["seed"] - 1) // SEEDS == block] for block in range(RUNS)]
    assert all(len(b) == SEEDS * len(QUALITY) and b["seed"].nunique() == SEEDS for b in blocks)
    return blocks


def coverage(runs: list[pd.DataFrame]) -> tuple[float, int, int]:
    """(coverage, intervals checked, runs that ranked the best strategy first) over the simulated runs.

    The paired tests' p-values are not checked here, so they are not computed: with ties at 12 pairs
    scipy's Wilcoxon runs an exact permutation test of 2**12 signings, about a second per call.
    """
    covered = checked = best_first = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stats, "wilcoxon_p", lambda differences, alpha=stats.ALPHA: (math.nan, "not computed"))
        for frame in runs:
            c, n, first = interval_checks(frame)
            covered, checked, best_first = covered + c, checked + n, best_first + first
    return covered / checked, checked, best_first


def test_interval_coverage_over_repeated_simulated_runs(simulated_runs):
    """Every 95% interval the report shows, checked against the planted truth over repeated runs."""
    rate, checked, best_first = coverage(simulated_runs)
    low, high = BAND
    print(f"\nplanted-effect simulation: {RUNS} runs, {checked} intervals, coverage {rate:.3f} "
          f"(band {low:.3f}-{high:.3f}), best strategy ranked first in {best_first}/{RUNS} runs")  # fmt: skip
    assert checked == RUNS * 8
    assert low <= rate <= high
    assert best_first == RUNS


def at_confidence(confidence: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every interval of the stats module computed at ``confidence`` while labelled 95%."""
    wilson = stats.wilson
    monkeypatch.setattr(stats, "bootstrap_mean", functools.partial(stats.bootstrap_mean, confidence=confidence))
    monkeypatch.setattr(stats, "wilson", lambda successes, n, confidence_=confidence: wilson(successes, n, confidence_))


@pytest.mark.parametrize("confidence", [0.80, 0.999])
def test_the_coverage_check_rejects_intervals_of_the_wrong_width(simulated_runs, monkeypatch, confidence):
    """The same simulated runs with intervals too narrow (80%) or too wide (99.9%): the band catches both."""
    at_confidence(confidence, monkeypatch)
    rate, checked, _ = coverage(simulated_runs)
    low, high = BAND
    print(f"\nintervals at {confidence:.1%} labelled 95%: coverage {rate:.3f}, band {low:.3f}-{high:.3f}")
    assert not low <= rate <= high
