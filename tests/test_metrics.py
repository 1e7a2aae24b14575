from __future__ import annotations

import pytest

from sandbox.engine import build_cast
from sandbox.metrics import concessions, count_questions, movement_share, outcome_metrics
from sandbox.schemas import Action, ActionKind, EpisodeSpec, ModelCall, Outcome, OutcomeStatus, Transcript, Turn

SPEC = EpisodeSpec(strategy="assertive-consultant", prospect="price-haggler", scenario="saas-seats")


def turn(i, speaker, message, kind="none", price=None, cost=None):
    return Turn(
        index=i,
        speaker=speaker,
        message=message,
        action=Action(kind=ActionKind(kind), price=price),
        calls=[ModelCall(model="m", purpose="p", tokens_in=100, tokens_out=20, cost_usd=cost)],
    )


def transcript(catalog, turns, outcome):
    return Transcript(episode_id="x", spec=SPEC, cast=build_cast(SPEC, catalog), turns=turns, outcome=outcome)


def test_deal_metrics(catalog):
    # list 24,000; floor 19,200; Dana's walk-away 0.92 * 24,000 = 22,080
    turns = [
        turn(0, "rep", "What does a reporting error cost you? How often?"),
        turn(1, "prospect", "Too expensive. 18,000.", "offer", 18000, cost=0.01),
        turn(2, "rep", "I can do 22,000 for two years.", "offer", 22000),
        turn(3, "prospect", "20,000 and we sign.", "offer", 20000),
        turn(4, "rep", "21,000 is my best.", "offer", 21000),
        turn(5, "prospect", "Deal.", "accept"),
    ]
    m = outcome_metrics(transcript(catalog, turns, Outcome(status="deal", price=21000, decided_by="prospect")))
    assert m.deal and m.final_price == 21000
    assert m.discount_from_list == pytest.approx(3000 / 24000)
    assert m.rep_concessions == 2 and m.rep_concession_total == 3000
    assert m.rep_questions == 2 and m.prospect_questions == 0
    assert m.rep_movement == 3000 and m.prospect_movement == 3000
    assert m.prospect_movement_share == pytest.approx(0.5)
    assert m.faithfulness_violations == 0
    assert m.turns == 6 and m.model_calls == 6
    assert m.tokens_in == 600 and m.cost_usd == pytest.approx(0.01)
    rep_words = sum(len(t.message.split()) for t in turns if t.speaker == "rep")
    assert m.rep_talk_share == pytest.approx(rep_words / sum(len(t.message.split()) for t in turns))


def test_faithfulness_violations(catalog):
    turns = [
        turn(0, "rep", "Fine, 15,000.", "offer", 15000),  # below the 19,200 floor
        turn(1, "prospect", "23,000 then.", "offer", 23000),
        turn(2, "rep", "Agreed.", "accept"),
    ]
    m = outcome_metrics(transcript(catalog, turns, Outcome(status="deal", price=23000, decided_by="rep")))
    assert m.rep_offers_below_floor == 1
    assert not m.prospect_accepted_above_walk_away  # the rep accepted, not the prospect
    turns = [turn(0, "rep", "It is 24,000."), turn(1, "prospect", "OK, deal.", "accept")]
    m = outcome_metrics(transcript(catalog, turns, Outcome(status="deal", price=24000, decided_by="prospect")))
    assert m.prospect_accepted_above_walk_away  # 24,000 > 22,080
    assert m.faithfulness_violations == 1
    assert m.prospect_movement_share is None  # nobody moved: the share is undefined, not 0


def test_no_deal_and_failure(catalog):
    turns = [turn(0, "rep", "Hi?"), turn(1, "prospect", "Bye.", "walk_away")]
    m = outcome_metrics(transcript(catalog, turns, Outcome(status="walk_away", decided_by="prospect")))
    assert not m.deal and m.final_price is None and m.discount_from_list is None
    assert m.prospect_movement_share is None and m.cost_usd is None
    m = outcome_metrics(transcript(catalog, [], Outcome(status=OutcomeStatus.FAILED, reason="boom")))
    assert m.status is OutcomeStatus.FAILED and m.turns == 0 and m.rep_talk_share is None


def test_pure_helpers():
    assert concessions(100, [100, 90, 95, 80]) == [10, 15]
    assert concessions(100, []) == []
    assert count_questions("Why? How many seats. Really?") == 2
    assert movement_share(0, 0) is None
    assert movement_share(1, 3) == pytest.approx(0.75)
