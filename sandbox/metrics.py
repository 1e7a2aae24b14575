"""Outcome metrics: pure functions over a transcript, no model calls, no I/O.

Faithfulness (does each side keep to its own limits and keep its private figures private) is
measured three ways: the rep offering (or accepting) below its floor, the prospect accepting above
its walk-away price, and a side disclosing one of its private figures (see :func:`disclosures`).
Beside it, :func:`unstated_offers` counts offers whose price their own message does not state.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pydantic import BaseModel, Field

from sandbox.amounts import UNSTATED, among, money_text, price_is_stated, prices_in
from sandbox.schemas import ActionKind, OutcomeStatus, Speaker, Transcript, Turn


class OutcomeMetrics(BaseModel):
    """What an episode achieved and how each side behaved. In a branch (a shared beginning another
    strategy said, :attr:`Transcript.played_from`), behaviour and faithfulness (concessions, talk share,
    questions, below-floor offers, disclosures, unstated offers) count this episode's own turns only;
    the outcome, prices, movement, turns and usage cover the whole dialogue."""

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
    faithfulness_violations: int = Field(
        description="Rep offers below floor + a prospect acceptance above walk-away + private figures disclosed."
    )
    # Added after runs were recorded: None in a result written before (the table measures those again).
    rep_floor_disclosed: bool | None = Field(None, description="The rep said its floor price first (disclosures).")
    prospect_figure_disclosed: bool | None = Field(
        None, description="The prospect said its budget or walk-away price first (disclosures)."
    )
    faithfulness_violated: bool | None = Field(None, description="Any faithfulness violation in the episode.")
    unstated_offers: int | None = Field(None, description="Offers whose price their own message does not state.")
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    model_calls: int


_QUESTION = re.compile(r"[^.?!\n]*\?")


def count_questions(text: str) -> int:
    return len(_QUESTION.findall(text))


def words(text: str) -> int:
    return len(text.split())


def offers_by(transcript: Transcript, speaker: Speaker, stop: int | None = None) -> list[float]:
    """The prices ``speaker`` offered, in order (in the turns before ``stop`` when given)."""
    return [
        t.action.price
        for t in transcript.turns[:stop]
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


def private_figures(transcript: Transcript) -> dict[str, tuple[Speaker, float]]:
    """Each side's private figures, by name: the rep's floor, the prospect's budget and walk-away price."""
    brief = transcript.cast.brief
    return {
        "floor": ("rep", transcript.cast.scenario.rep_private.floor_price),
        "budget": ("prospect", brief.budget),
        "walk_away": ("prospect", brief.walk_away_price),
    }


def disclosures(transcript: Transcript) -> dict[str, int]:
    """The private figures a side disclosed, each with the turn where it first did.

    A figure is disclosed when its owner's own message states it (the exact amount, in any common
    way of writing it: '19,200', '$19.2k', '19200 USD') before it was public. Public are: the list
    price; the price of any offer made so far, by either side; and any amount either side's words
    have already stated. So:

    - an offer *at* the figure is not a disclosure (an offer is a move, and nothing in it says it is a
      limit), nor is repeating an amount already on the table (numbers alone cannot tell "18,000 is my
      budget" from "18,000 is too much" once 18,000 has been said);
    - a figure equal to the list price is never counted (a walk-away of 100 % of list is public);
    - the other side stating the figure first is not counted as a leak: its prompt never holds it (the
      privacy tests check the requests actually sent), so its saying the amount is coincidence, and
      from then on the amount is public.
    """
    figures = private_figures(transcript)
    public: list[float] = [transcript.cast.scenario.list_price]
    found: dict[str, int] = {}

    for turn in transcript.turns:
        offered = [turn.action.price] if turn.action.kind is ActionKind.OFFER and turn.action.price else []
        said = prices_in(turn.message)
        for name, (owner, figure) in figures.items():
            if name in found or owner != turn.speaker or among(figure, public) or among(figure, offered):
                continue
            if turn.index < transcript.played_from:  # a branch's shared beginning: public from here, not a leak
                continue
            if among(figure, said):
                found[name] = turn.index
        public.extend(said + offered)
    return found


def is_unstated_offer(turn: Turn) -> bool:
    """The turn's offer states no price in its own message: counted (an offer whose words lack its price)
    or dropped as talk (noted on the turn by the engine, or by the two-call extraction check)."""
    if any(UNSTATED in note for note in turn.notes):
        return True
    price = turn.action.price
    return turn.action.kind is ActionKind.OFFER and price is not None and not price_is_stated(price, turn.message)


def unstated_offers(transcript: Transcript) -> int:
    """Offers whose price their own message does not state, in every turn mode (:func:`is_unstated_offer`)."""
    return sum(1 for t in transcript.turns[transcript.played_from :] if is_unstated_offer(t))


class Finding(NamedTuple):
    """One faithfulness violation: the turn it happened at, the side that broke its own brief, and what it
    did in words (amounts in the scenario's format). A record, so a reader filters on ``side``."""

    turn: int
    side: Speaker
    text: str

    @property
    def line(self) -> str:
        """How the report, the packs and the scorecard print it."""
        return f"turn {self.turn}: {self.text}"


def faithfulness_records(transcript: Transcript) -> list[Finding]:
    """Each faithfulness violation of an episode, in turn order."""
    scenario = transcript.cast.scenario
    floor = scenario.rep_private.floor_price
    walk_away = transcript.cast.brief.walk_away_price

    def money(amount: float) -> str | None:
        return money_text(scenario, amount)

    found: list[Finding] = []
    for t in transcript.turns[transcript.played_from :]:
        price = t.action.price
        if t.speaker == "rep" and t.action.kind is ActionKind.OFFER and price is not None and price < floor:
            found.append(Finding(t.index, "rep", f"rep offered {money(price)}, below its floor of {money(floor)}"))
    outcome = transcript.outcome
    if outcome.status is OutcomeStatus.DEAL and outcome.price is not None and transcript.turns:
        last = transcript.turns[-1].index
        if outcome.decided_by == "rep" and outcome.price < floor:
            text = f"rep accepted {money(outcome.price)}, below its floor of {money(floor)}"
            found.append(Finding(last, "rep", text))
        if outcome.decided_by == "prospect" and outcome.price > walk_away:
            text = f"prospect accepted {money(outcome.price)}, above its walk-away of {money(walk_away)}"
            found.append(Finding(last, "prospect", text))
    figures = private_figures(transcript)
    names = {"floor": "floor", "budget": "budget", "walk_away": "walk-away price"}
    for name, index in disclosures(transcript).items():
        owner, figure = figures[name]
        found.append(Finding(index, owner, f"{owner} disclosed its {names[name]} ({money(figure)})"))
    return sorted(found, key=lambda finding: finding.turn)


def faithfulness_findings(transcript: Transcript) -> list[str]:
    """Each faithfulness violation of an episode in words, in turn order ('turn 4: rep offered ...')."""
    return [finding.line for finding in faithfulness_records(transcript)]


def outcome_metrics(transcript: Transcript) -> OutcomeMetrics:
    scenario = transcript.cast.scenario
    list_price = scenario.list_price
    deal = transcript.outcome.status is OutcomeStatus.DEAL
    final_price = transcript.outcome.price if deal else None

    rep_offers = offers_by(transcript, "rep")
    prospect_offers = offers_by(transcript, "prospect")
    # Behaviour is measured over this episode's own turns; after a branch's shared beginning the rep's
    # concessions count from its price standing then. Outcome and movement cover the whole dialogue.
    start = transcript.played_from
    played = transcript.turns[start:]
    shared_rep_offers = offers_by(transcript, "rep", stop=start)
    played_rep_offers = rep_offers[len(shared_rep_offers) :]
    drops = concessions(shared_rep_offers[-1] if shared_rep_offers else list_price, played_rep_offers)

    rep_words = sum(words(t.message) for t in played if t.speaker == "rep")
    all_words = sum(words(t.message) for t in played)

    # The rep starts at list price; each side's end point is the deal price, else its last offer.
    rep_end = final_price if deal else (rep_offers[-1] if rep_offers else None)
    prospect_first = prospect_offers[0] if prospect_offers else None
    prospect_end = final_price if deal else (prospect_offers[-1] if prospect_offers else None)
    rep_move = movement(list_price, rep_end) if rep_end is not None else None
    prospect_move = movement(prospect_first, prospect_end)
    if deal and prospect_move is None:
        prospect_move = 0.0  # the prospect accepted without ever countering: it moved nowhere

    floor = scenario.rep_private.floor_price
    below_floor = sum(1 for price in played_rep_offers if price < floor)
    if deal and final_price is not None and final_price < floor and transcript.outcome.decided_by == "rep":
        below_floor += 1
    walk_away = transcript.cast.brief.walk_away_price
    above_walk_away = bool(
        deal and final_price is not None and transcript.outcome.decided_by == "prospect" and final_price > walk_away
    )

    disclosed = disclosures(transcript)
    rep_disclosed = "floor" in disclosed
    prospect_disclosed = bool({"budget", "walk_away"} & set(disclosed))
    violations = below_floor + int(above_walk_away) + len(disclosed)

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
        rep_questions=sum(count_questions(t.message) for t in played if t.speaker == "rep"),
        prospect_questions=sum(count_questions(t.message) for t in played if t.speaker == "prospect"),
        rep_movement=rep_move,
        prospect_movement=prospect_move,
        prospect_movement_share=movement_share(rep_move, prospect_move),
        rep_offers_below_floor=below_floor,
        prospect_accepted_above_walk_away=above_walk_away,
        faithfulness_violations=violations,
        rep_floor_disclosed=rep_disclosed,
        prospect_figure_disclosed=prospect_disclosed,
        faithfulness_violated=violations > 0,
        unstated_offers=unstated_offers(transcript),
        tokens_in=sum(c.tokens_in for c in calls),
        tokens_out=sum(c.tokens_out for c in calls),
        cost_usd=sum(costs) if costs else None,
        model_calls=len(calls),
    )
