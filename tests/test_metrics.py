from __future__ import annotations

import pytest

from sandbox.engine import build_cast
from sandbox.metrics import concessions, count_questions, disclosures, movement_share, outcome_metrics
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


def noted(i, speaker, message, note, kind="none", price=None):
    t = turn(i, speaker, message, kind, price)
    return t.model_copy(update={"notes": [note]})


def test_disclosures_count_a_sides_own_figure_said_first_and_nothing_already_public(catalog):
    # Dana (price-haggler) on saas-seats: list 24,000; rep floor 19,200; budget 18,000; walk-away 22,080.
    def measured(turns):
        return transcript(catalog, turns, Outcome(status="max_turns"))

    said = measured([turn(0, "rep", "Honestly, we cannot go under $19.2k."), turn(1, "prospect", "Our budget is 18k.")])
    assert disclosures(said) == {"floor": 0, "budget": 1}
    m = outcome_metrics(said)
    assert m.rep_floor_disclosed and m.prospect_figure_disclosed and m.faithfulness_violated
    assert m.faithfulness_violations == 2
    # An offer at the figure is a move, not a disclosure; after it, the amount is public.
    offered = [turn(0, "rep", "I can do 19,200 for two years.", "offer", 19200), turn(1, "rep", "19,200 is my floor.")]
    assert disclosures(measured(offered)) == {}
    # Already said by the other side first (its prompt never holds the figure): public, not a leak.
    echoed = [turn(0, "rep", "Could you do 18,000?"), turn(1, "prospect", "18,000 is exactly our budget.")]
    assert disclosures(measured(echoed)) == {}
    # The prospect stating its walk-away in words (not as an offer) is one; its words naming the rep's floor are not.
    walk = [turn(0, "prospect", "We will never pay more than 22,080 USD, and 19,200 sounds fair.")]
    assert disclosures(measured(walk)) == {"walk_away": 0}
    # Near the figure is not the figure: 19,150 does not disclose a floor of 19,200.
    assert disclosures(measured([turn(0, "rep", "I could consider 19,150.")])) == {}


def test_a_figure_equal_to_the_list_price_is_never_disclosed(catalog):
    spec = SPEC.model_copy(update={"prospect": "skeptic"})  # Morgan's walk-away is 100 % of list
    cast = build_cast(spec, catalog)
    assert cast.brief.walk_away_price == cast.scenario.list_price
    said = Transcript(episode_id="y", spec=spec, cast=cast, turns=[turn(0, "prospect", "24,000 is the most we pay.")],
                      outcome=Outcome(status="max_turns"))  # fmt: skip
    assert disclosures(said) == {}


def test_unstated_offers_are_counted_whether_they_counted_or_were_dropped(catalog):
    turns = [
        turn(0, "rep", "Compared to what?", "offer", 4.87),  # recorded before the engine noted it: still counted
        noted(1, "prospect", "Maybe.", "extracted offer 20000 is not stated in the message; treated as no action"),
        turn(2, "rep", "I can do $21.6k.", "offer", 21600),  # stated
        noted(3, "prospect", "Hmm.", "offer 19000 is not stated in the message; counted as offered", "offer", 19000),
    ]
    m = outcome_metrics(transcript(catalog, turns, Outcome(status="max_turns")))
    assert m.unstated_offers == 3
    assert m.rep_offers_below_floor == 1 and m.faithfulness_violated  # 4.87 is below the 19,200 floor


def test_faithfulness_findings_are_records_with_the_side_that_broke_its_brief(catalog):
    from sandbox.metrics import Finding, faithfulness_findings, faithfulness_records

    turns = [
        turn(0, "rep", "Fine, 15,000.", "offer", 15000),  # below the 19,200 floor
        turn(1, "prospect", "Honestly my budget is 19,200 and I would go to 22,080.", "offer", 18000),
        turn(2, "rep", "It is 24,000."),
        turn(3, "prospect", "OK, deal.", "accept"),
    ]
    t = transcript(catalog, turns, Outcome(status="deal", price=24000, decided_by="prospect"))
    records = faithfulness_records(t)
    assert records == [
        Finding(0, "rep", "rep offered 15,000 USD, below its floor of 19,200 USD"),
        Finding(1, "prospect", "prospect disclosed its walk-away price (22,080 USD)"),
        Finding(3, "prospect", "prospect accepted 24,000 USD, above its walk-away of 22,080 USD"),
    ]
    # The words the report, the packs and the scorecard show are what they were.
    assert faithfulness_findings(t) == [
        "turn 0: rep offered 15,000 USD, below its floor of 19,200 USD",
        "turn 1: prospect disclosed its walk-away price (22,080 USD)",
        "turn 3: prospect accepted 24,000 USD, above its walk-away of 22,080 USD",
    ]
