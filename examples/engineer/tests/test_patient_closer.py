"""Our own strategy, tested on recorded traffic: `pytest` replays cassettes/, offline and deterministic.

`pytest --sandbox-record` records them again on the embedded model; `sandbox cassettes check cassettes`
says which went stale after a prompt or persona edit, and which field of the request changed.
"""

from __future__ import annotations


def test_our_strategy_is_in_the_catalog(sandbox_catalog):
    strategy = sandbox_catalog.strategy("patient-closer")
    assert strategy.name == "Patient closer"
    assert "price-haggler" in sandbox_catalog.prospects  # the shipped personas are still there


def test_patient_closer_plays_a_short_negotiation(sandbox_episode):
    result = sandbox_episode("patient-closer", "price-haggler", "saas-seats", seed=1, max_turns=4)
    assert result.status == "ok", result.error
    transcript = result.transcript
    assert transcript.spec.strategy == "patient-closer"
    assert [turn.speaker for turn in transcript.turns][:2] == ["rep", "prospect"]
    assert all(turn.message.strip() for turn in transcript.turns)
    assert result.metrics.turns == len(transcript.turns) <= 4


def test_patient_closer_against_a_shipped_strategy(sandbox_experiment):
    results = sandbox_experiment(
        {
            "id": "patient-vs-eager",
            "strategies": ["patient-closer", "eager-to-please"],
            "prospects": ["price-haggler"],
            "scenarios": ["saas-seats"],
            "max_turns": 2,
            "concurrency": 1,
        }
    )
    assert results.summary.planned == 2 and results.summary.failed == 0
    assert sorted(e.spec.strategy for e in results.episodes) == ["eager-to-please", "patient-closer"]
    assert all(e.status == "ok" and e.transcript.turns for e in results.episodes)


def test_the_judge_scores_our_rep_on_the_rubric(sandbox_episode, sandbox_rubric):
    result = sandbox_episode("patient-closer", "skeptic", "saas-seats", max_turns=2, judges=["local"])
    assert result.status == "ok", result.error
    (judgement,) = result.judgements
    assert judgement.rubric_id == sandbox_rubric.id
    assert [s.criterion for s in judgement.scores] == [c.id for c in sandbox_rubric.criteria]
    assert all(s.score is None or 1 <= s.score <= 5 for s in judgement.scores)
