"""The negotiation loop: two agents alternate turns until a deal, a walk-away or the turn limit.

The engine owns the rules, not the models: a deal exists only when one side accepts the
other side's standing offer, and an invalid action (accepting when nothing is on the table)
is recorded in the turn's notes and treated as talk. An offer whose price its own message does
not state is noted on the turn, and counted or dropped as the speaker's profile says
(:attr:`~sandbox.profiles.Profile.unstated_offers`). A model failure ends the episode as
``failed`` with its reason and the failed calls kept as evidence, never as a deal or no-deal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from sandbox import __version__
from sandbox.agents import TurnPolicy, TurnRequest, policy_for
from sandbox.amounts import UNSTATED, price_is_stated
from sandbox.catalog import Catalog, at_difficulty
from sandbox.models import ModelCallError
from sandbox.profiles import Profile
from sandbox.prompts import conversation_for, state_line, system_prompt_for
from sandbox.schemas import (
    Action,
    ActionKind,
    Cast,
    EpisodeSpec,
    ModelCall,
    Outcome,
    OutcomeStatus,
    Scenario,
    Speaker,
    Transcript,
    Turn,
    brief_for,
)

OnTurn = Callable[[Turn], None]
UnstatedOffers = Literal["count", "drop"]


def build_cast(spec: EpisodeSpec, catalog: Catalog) -> Cast:
    """The content ``spec`` names, the prospect at the spec's level (so a branch of a hard practice
    session, rebuilt from the catalog, meets the same hard brief)."""
    prospect = at_difficulty(catalog.prospect(spec.prospect), spec.difficulty)
    scenario = catalog.scenario(spec.scenario)
    return Cast(
        strategy=catalog.strategy(spec.strategy),
        prospect=prospect,
        scenario=scenario,
        brief=brief_for(prospect, scenario),
    )


def _other(speaker: Speaker) -> Speaker:
    return "prospect" if speaker == "rep" else "rep"


def opener_cue(speaker: Speaker, names: dict[Speaker, str], seller: str) -> str:
    """The user-side line that starts the dialogue for whoever speaks first (chat models need one)."""
    if speaker == "rep":
        return f"{names['prospect']} has joined the call. Greet {names['prospect']} and ask your first question."
    return f"{names['rep']} from {seller} has joined the call. Say hello and say what you want to know."


def check_unstated(action: Action, rule: UnstatedOffers) -> tuple[Action, str]:
    """An offer whose message does not state its price: kept or dropped by ``rule``, with the note saying so."""
    if rule == "drop":
        return Action(), f"offer {action.price:g} {UNSTATED}; treated as no action"
    return action, f"offer {action.price:g} {UNSTATED}; counted as offered"


def apply_action(action: Action, speaker: Speaker, offers: dict[Speaker, float | None]) -> None:
    """What a turn's action does to the offers on the table: an offer stands, a rejection withdraws."""
    if action.kind is ActionKind.OFFER:
        offers[speaker] = action.price
    elif action.kind is ActionKind.REJECT:
        offers[_other(speaker)] = None


def standing_offers(turns: Sequence[Turn], scenario: Scenario) -> dict[Speaker, float | None]:
    """The offers on the table after ``turns``: the list price is the rep's offer until the rep says
    otherwise, then each turn's action applies. What the engine, a practice hint and a chat export's
    system prompt all start from."""
    offers: dict[Speaker, float | None] = {"rep": scenario.list_price, "prospect": None}
    for turn in turns:
        apply_action(turn.action, turn.speaker, offers)
    return offers


def ending(action: Action, standing: float | None, speaker: Speaker = "rep") -> Outcome | None:
    """The outcome an (already checked) action ends the dialogue with, or None when it goes on."""
    if action.kind is ActionKind.ACCEPT:
        return Outcome(status=OutcomeStatus.DEAL, price=standing, decided_by=speaker)
    if action.kind is ActionKind.WALK_AWAY:
        return Outcome(status=OutcomeStatus.WALK_AWAY, decided_by=speaker, reason=f"{speaker} walked away")
    return None


def turn_seed(episode_seed: int, turn_index: int) -> int:
    """Distinct, reproducible seed per turn so the same episode seed replays the same dialogue."""
    return episode_seed * 1000 + turn_index


def turn_request(
    spec: EpisodeSpec, cast: Cast, turns: Sequence[Turn], speaker: Speaker, offers: Mapping[Speaker, float | None]
) -> TurnRequest:
    """What ``speaker`` is shown to say the turn after ``turns``: its own prompt, the dialogue from its
    seat, the offers standing. One builder, so anything else that asks an agent "what would you say
    here" (a practice session's hint) asks exactly as the engine does."""
    scenario = cast.scenario
    names: dict[Speaker, str] = {"rep": scenario.rep_name, "prospect": cast.prospect.display_name}
    other = _other(speaker)
    state = state_line(offers[speaker], offers[other], scenario.money)
    cue = opener_cue(speaker, names, scenario.seller)
    return TurnRequest(
        speaker=speaker,
        system_prompt=system_prompt_for(speaker, cast.strategy, cast.prospect, scenario, cast.brief, state),
        conversation=conversation_for(speaker, [(t.speaker, t.message) for t in turns], cue),
        own_name=names[speaker],
        other_name=names[other],
        standing_offer=offers[other],
        currency=scenario.currency,
        seed=turn_seed(spec.seed, len(turns)),
    )


async def negotiate(
    spec: EpisodeSpec,
    cast: Cast,
    rep: TurnPolicy,
    prospect: TurnPolicy,
    on_turn: OnTurn | None = None,
    unstated_offers: Mapping[Speaker, UnstatedOffers] | None = None,
) -> Transcript:
    """Play one episode. ``unstated_offers`` says per side what an offer its message does not state
    does (default: it counts, noted on the turn). A spec's prefix is replayed first, as it was said and
    under the same rules, and the agents take over at the turn after it."""
    started = time.perf_counter()
    scenario = cast.scenario
    policies: dict[Speaker, TurnPolicy] = {"rep": rep, "prospect": prospect}
    offers = standing_offers([], scenario)
    turns: list[Turn] = []
    failed_calls: list[ModelCall] = []
    outcome: Outcome | None = None
    speaker: Speaker = spec.opener

    for said in spec.prefix.turns if spec.prefix is not None else ():
        turn = Turn(index=len(turns), speaker=said.speaker, message=said.message, action=said.action)
        if ending(turn.action, offers[_other(said.speaker)]) is not None:
            raise ValueError(f"prefix turn {turn.index} ends the dialogue ({turn.action.kind.value}); branch before it")
        apply_action(turn.action, said.speaker, offers)
        turns.append(turn)
        speaker = _other(said.speaker)

    for index in range(len(turns), spec.max_turns):
        other = _other(speaker)
        request = turn_request(spec, cast, turns, speaker, offers)
        try:
            result = await policies[speaker].take_turn(request)
        except ModelCallError as exc:
            failed_calls = list(exc.calls)
            outcome = Outcome(status=OutcomeStatus.FAILED, decided_by=None, reason=f"turn {index}: {exc.reason}")
            break

        action, notes = result.action, list(result.notes)
        if action.kind is ActionKind.ACCEPT and offers[other] is None:
            notes.append(f"accept with no standing offer from the {other}; treated as no action")
            action = Action()
        if action.kind is ActionKind.OFFER and not price_is_stated(action.price, result.message):
            action, note = check_unstated(action, (unstated_offers or {}).get(speaker, "count"))
            notes.append(note)
        outcome = ending(action, offers[other], speaker)
        apply_action(action, speaker, offers)

        turn = Turn(
            index=index, speaker=speaker, message=result.message, action=action, calls=result.calls, notes=notes
        )
        turns.append(turn)
        if on_turn is not None:
            on_turn(turn)
        if outcome is not None:
            break
        speaker = other

    if outcome is None:
        outcome = Outcome(status=OutcomeStatus.MAX_TURNS, reason=f"no agreement in {spec.max_turns} turns")
    return Transcript(
        episode_id=spec.episode_id,
        spec=spec,
        cast=cast,
        turns=turns,
        failed_turn_calls=failed_calls,
        outcome=outcome,
        wall_time_s=round(time.perf_counter() - started, 3),
        sandbox_version=__version__,
    )


async def run_episode(
    spec: EpisodeSpec,
    catalog: Catalog,
    rep: Profile,
    prospect: Profile,
    on_turn: OnTurn | None = None,
) -> Transcript:
    """Resolve the content for one spec, then negotiate with the two sides' resolved models."""
    cast = build_cast(spec, catalog)
    rules: dict[Speaker, UnstatedOffers] = {"rep": rep.unstated_offers, "prospect": prospect.unstated_offers}
    return await negotiate(spec, cast, policy_for(rep), policy_for(prospect), on_turn=on_turn, unstated_offers=rules)
