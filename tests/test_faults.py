"""The fault suite: injected provider faults over whole runs. Nothing lost, nothing duplicated,
every failure recorded with its reason, retries bounded."""

from __future__ import annotations

from collections import Counter

import pytest

from sandbox.experiment import ExperimentSpec
from sandbox.judge import load_rubric
from sandbox.runner import run, short_reason
from sandbox.store import read_results
from tests.conftest import ROOT
from tests.fake_provider import FAULTS, FakeProvider, deal_or_walk

EXPECTED = {"price-haggler": "deal", "skeptic": "walk_away"}  # what deal_or_walk() scripts for each prospect
MAX_ATTEMPTS = 4
# The mixed run's judge scores one criterion about each side and one about both (the three ways a
# criterion's evidence is checked) instead of all ten: every judge path meets every fault, at a third
# of the calls. (A rubric file needs 8 to 12 criteria; this cut is made in memory, for the test only.)
JUDGED_CRITERIA = ["discovery", "prospect-commitment", "relationship-health"]


@pytest.fixture(autouse=True)
def fake_key(monkeypatch, fast_retries):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-faults-not-a-real-key")


def faulty_run(catalog, folder, faults: list[str], rate: float, episodes_per_strategy: int, judged: bool):  # noqa: ANN201
    with FakeProvider(deal_or_walk(), faults=faults, fault_rate=rate, seed=7) as provider:
        model = {"model": "openai/gpt-4o-mini", "api_base": provider.api_base, "timeout_s": 0.5}
        spec = ExperimentSpec(
            id="faults",
            strategies=["eager-to-please", "assertive-consultant"],
            prospects=["price-haggler", "skeptic"],
            scenarios=["saas-seats"],
            seeds=episodes_per_strategy // 2,
            max_turns=2,
            models={"rep": model, "prospect": model, "judge": [model] if judged else []},
            concurrency=32,
        )
        rubric = None
        if judged:
            rubric = load_rubric(ROOT / "judges" / "rubric.yaml")
            criteria = [c for c in rubric.criteria if c.id in JUDGED_CRITERIA]
            assert {c.about for c in criteria} == {"rep", "prospect", "both"}
            rubric = rubric.model_copy(update={"criteria": criteria})
        outcome = run(spec, catalog, rubric, folder=folder, report=False)
        injected = dict(provider.injected)
    return outcome.plan, outcome.summary, injected


def tally(plan, folder) -> dict:  # noqa: ANN001
    results = list(read_results(folder))
    ids = Counter(r.episode_id for r in results)
    planned = {e.episode_id for e in plan.planned}
    calls = [c for r in results if r.transcript for c in r.transcript.calls] + [
        c for r in results for j in r.judgements for c in j.calls
    ]
    return {
        "episodes": len(planned),
        "succeeded": sum(r.status == "ok" for r in results),
        "failed_by_reason": dict(Counter(short_reason(r.error) for r in results if r.status == "failed")),
        "lost": len(planned - set(ids)),
        "duplicated": sum(n - 1 for n in ids.values()),
        "retries": sum(max(c.attempts - 1, 0) for c in calls),
        "retries_by_result": sum(r.retries for r in results),
        "max_attempts": max((c.attempts for c in calls), default=0),
        "judge_failures": sum(len(j.failures) for r in results for j in r.judgements),
        "failures_have_reasons": all(r.error for r in results if r.status == "failed"),
        "outcomes": dict(Counter(r.transcript.outcome.status.value for r in results if r.status == "ok")),
        "misrecorded": sum(
            1 for r in results if r.status == "ok" and r.transcript.outcome.status.value != EXPECTED[r.spec.prospect]
        ),
    }


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_alone(catalog, tmp_path, fault):
    plan, summary, injected = faulty_run(catalog, tmp_path / "run", [fault], 0.3, 20, judged=False)
    t = tally(plan, tmp_path / "run")
    print(f"\n{fault}: injected {injected.get(fault, 0)}; {t}")
    assert injected.get(fault, 0) > 0
    assert t["lost"] == 0 and t["duplicated"] == 0
    assert t["succeeded"] + sum(t["failed_by_reason"].values()) == t["episodes"] == 40
    assert t["failures_have_reasons"] and t["max_attempts"] <= MAX_ATTEMPTS
    assert t["misrecorded"] == 0
    assert summary.retries == t["retries"]
    if fault in {"429", "500", "503", "timeout", "reset", "malformed", "empty"}:
        assert t["retries"] > 0  # transient: retried, and mostly recovered
        assert t["succeeded"] >= 30


def test_mixed_faults_over_a_200_episode_run(catalog, tmp_path):
    plan, summary, injected = faulty_run(catalog, tmp_path / "run", FAULTS, 0.2, 100, judged=True)
    t = tally(plan, tmp_path / "run")
    print(f"\nmixed faults at 20% over {t['episodes']} judged episodes: injected {injected}")
    print(
        f"episodes {t['episodes']}, succeeded {t['succeeded']}, failed by reason {t['failed_by_reason']}, "
        f"lost {t['lost']}, duplicated {t['duplicated']}, retries made {t['retries']}, "
        f"judge criteria failed {t['judge_failures']}; outcomes {t['outcomes']}, mis-recorded {t['misrecorded']}"
    )
    assert t["episodes"] == 200 and t["lost"] == 0 and t["duplicated"] == 0
    assert t["succeeded"] + sum(t["failed_by_reason"].values()) == 200
    assert t["failures_have_reasons"] and t["max_attempts"] <= MAX_ATTEMPTS
    assert summary.ok + summary.failed == 200
    assert summary.retries == t["retries"] == t["retries_by_result"]  # live counter == calls kept
    assert t["misrecorded"] == 0 and set(t["outcomes"]) == {"deal", "walk_away"}


def test_configuration_failures_are_summed_up_by_what_is_wrong():
    refused = (
        "turn 0: openai/my-smollm at http://127.0.0.1:5/v1 (rep:turn): connection refused: nothing listens at the "
        "api_base; start the server or fix the address [ConnectError: All connection attempts failed]"
    )
    assert short_reason(refused) == "connection refused"
    no_key = "turn 0: openai/gpt-4o-mini (rep:turn): no API key: set the provider's key [MissingKeyError: x]"
    assert short_reason(no_key) == "no API key"
    assert short_reason("turn 3: openai/x (rep:turn) failed after 4 attempt(s): Timeout: slow") == (
        "Timeout after 4 attempts"
    )
