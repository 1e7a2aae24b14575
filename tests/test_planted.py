"""Planted effects through the whole pipeline: fake provider -> runner -> judge -> table -> stats."""

from __future__ import annotations

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


def planted_run(catalog, folder, api_base: str, seeds: int, prospects: list[str]):  # noqa: ANN201
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
    rubric = load_rubric(ROOT / "judges" / "rubric.yaml")
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


def test_interval_coverage_over_repeated_simulated_runs(catalog, tmp_path):
    """Every 95% interval the report shows, checked against the planted truth over repeated runs."""
    repetitions = 25
    covered = checked = best_first = 0
    summaries = {k: catalog.strategy(k).summary for k in QUALITY}
    for rep in range(repetitions):
        with FakeProvider(responder(summaries, salt=rep)) as provider:
            frame = planted_run(catalog, tmp_path / f"run{rep}", provider.api_base, seeds=12, prospects=["skeptic"])
        c, n, first = interval_checks(frame)
        covered, checked, best_first = covered + c, checked + n, best_first + first
    coverage = covered / checked
    print(f"\nplanted-effect simulation: {repetitions} runs, {checked} intervals, coverage {coverage:.3f}, "
          f"best strategy ranked first in {best_first}/{repetitions} runs")  # fmt: skip
    assert 0.90 <= coverage <= 0.99
    assert best_first == repetitions
