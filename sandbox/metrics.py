"""Outcome metrics: pure functions over a transcript, no model calls, no I/O."""

from __future__ import annotations

import re

from pydantic import BaseModel

from sandbox.schemas import ActionKind, OutcomeStatus, Speaker, Transcript


class OutcomeMetrics(BaseModel):
    status: OutcomeStatus
    deal: bool
    final_price: float | None
    discount_from_list: float | None
    rep_concessions: int
    rep_concession_total: float
    turns: int
    rep_talk_share: float | None
    rep_questions: int
    prospect_questions: int
    rep_movement: float | None
    prospect_movement: float | None
    prospect_movement_share: float | None
    rep_offers_below_floor: int
    prospect_accepted_above_walk_away: bool
    faithfulness_violations: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    model_calls: int


_QUESTION = re.compile(r"[^.?!\n]*\?")


def count_questions(text: str) -> int:
    return len(_QUESTION.findall(text))


def words(text: str) -> int:
    return len(text.split())


def offers_by(transcript: Transcript, speaker: Speaker) -> list[float]:
    return [
        t.action.price
        for t in transcript.turns
        if t.speaker == speaker and t.action.kind is ActionKind.OFFER and t.action.price is not None
    ]


def concessions(list_price: float, rep_offers: list[float]) -> list[float]:
    """Each drop in the rep's price, starting from the list price (a raise is not a concession)."""
    drops: list[float] = []
    previous = list_price
    for price in rep_offers:
        if price < previous:
            drops.append(previous - price)
        previous = price
    return drops


def movement(first: float | None, end: float | None) -> float | None:
    if first is None or end is None:
        return None
    return abs(first - end)


def movement_share(rep_move: float | None, prospect_move: float | None) -> float | None:
    """Share of the total movement made by the prospect: above 0.5 means the prospect leaned in more."""
    if rep_move is None or prospect_move is None or rep_move + prospect_move == 0:
        return None
    return prospect_move / (rep_move + prospect_move)


def outcome_metrics(transcript: Transcript) -> OutcomeMetrics:
    scenario = transcript.cast.scenario
    list_price = scenario.list_price
    deal = transcript.outcome.status is OutcomeStatus.DEAL
    final_price = transcript.outcome.price if deal else None

    rep_offers = offers_by(transcript, "rep")
    prospect_offers = offers_by(transcript, "prospect")
    drops = concessions(list_price, rep_offers)

    rep_words = sum(words(t.message) for t in transcript.turns if t.speaker == "rep")
    all_words = sum(words(t.message) for t in transcript.turns)

    # The rep starts at list price; each side's end point is the deal price, else its last offer.
    rep_end = final_price if deal else (rep_offers[-1] if rep_offers else None)
    prospect_first = prospect_offers[0] if prospect_offers else None
    prospect_end = final_price if deal else (prospect_offers[-1] if prospect_offers else None)
    rep_move = movement(list_price, rep_end) if rep_end is not None else None
    prospect_move = movement(prospect_first, prospect_end)
    if deal and prospect_move is None:
        prospect_move = 0.0  # the prospect accepted without ever countering: it moved nowhere

    floor = scenario.rep_private.floor_price
    below_floor = sum(1 for price in rep_offers if price < floor)
    if deal and final_price is not None and final_price < floor and transcript.outcome.decided_by == "rep":
        below_floor += 1
    walk_away = transcript.cast.brief.walk_away_price
    above_walk_away = bool(
        deal and final_price is not None and transcript.outcome.decided_by == "prospect" and final_price > walk_away
    )

    calls = transcript.calls
    costs = [c.cost_usd for c in calls if c.cost_usd is not None]
    return OutcomeMetrics(
        status=transcript.outcome.status,
        deal=deal,
        final_price=final_price,
        discount_from_list=(list_price - final_price) / list_price if final_price is not None else None,
        rep_concessions=len(drops),
        rep_concession_total=sum(drops),
        turns=len(transcript.turns),
        rep_talk_share=rep_words / all_words if all_words else None,
        rep_questions=sum(count_questions(t.message) for t in transcript.turns if t.speaker == "rep"),
        prospect_questions=sum(count_questions(t.message) for t in transcript.turns if t.speaker == "prospect"),
        rep_movement=rep_move,
        prospect_movement=prospect_move,
        prospect_movement_share=movement_share(rep_move, prospect_move),
        rep_offers_below_floor=below_floor,
        prospect_accepted_above_walk_away=above_walk_away,
        faithfulness_violations=below_floor + int(above_walk_away),
        tokens_in=sum(c.tokens_in for c in calls),
        tokens_out=sum(c.tokens_out for c in calls),
        cost_usd=sum(costs) if costs else None,
        model_calls=len(calls),
    )
