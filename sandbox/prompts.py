"""Build each agent's prompt from only what that agent may know.

The privacy boundary is in the signatures: the rep's builder takes the prospect's
*public* view, and the prospect's builder takes the scenario's *public* view, so neither
can read the other side's private fields even by mistake. Templates live in ``prompts/``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import jinja2

from sandbox.schemas import (
    Prospect,
    ProspectBrief,
    ProspectPublic,
    Scenario,
    ScenarioPrivate,
    ScenarioPublic,
    Speaker,
    Strategy,
)

TEMPLATE_DIR = Path(__file__).parent / "prompts"

Message = dict[str, str]


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
        auto_reload=False,  # templates ship with the package: no stat() of the file on every turn
    )


def render(template: str, **values: object) -> str:
    return _env().get_template(template).render(**values).strip()


def rep_system_prompt(
    strategy: Strategy,
    scenario_public: ScenarioPublic,
    rep_private: ScenarioPrivate,
    prospect_public: ProspectPublic,
    state: str,
) -> str:
    return render(
        "rep_system.j2",
        rep_name=scenario_public.rep_name,
        scenario=scenario_public,
        private=rep_private,
        prospect_public=f"{prospect_public.display_name}. {prospect_public.public_profile}",
        strategy=strategy,
        state=state,
    )


def prospect_system_prompt(
    prospect: Prospect, brief: ProspectBrief, scenario_public: ScenarioPublic, state: str
) -> str:
    return render(
        "prospect_system.j2",
        prospect=prospect,
        private=prospect.private,
        brief=brief,
        scenario=scenario_public,
        state=state,
    )


def system_prompt_for(
    speaker: Speaker,
    strategy: Strategy,
    prospect: Prospect,
    scenario: Scenario,
    brief: ProspectBrief,
    state: str,
) -> str:
    """The one dispatch point: each side gets only its own private view."""
    if speaker == "rep":
        return rep_system_prompt(strategy, scenario.public(), scenario.rep_private, prospect.public(), state)
    return prospect_system_prompt(prospect, brief, scenario.public(), state)


def conversation_for(speaker: Speaker, turns: list[tuple[Speaker, str]], opener_cue: str) -> list[Message]:
    """The dialogue from one side's seat: its own lines as assistant, the other's as user."""
    messages: list[Message] = []
    if not turns or turns[0][0] == speaker:
        messages.append({"role": "user", "content": opener_cue})
    for who, text in turns:
        role = "assistant" if who == speaker else "user"
        if messages and messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n" + text}
        else:
            messages.append({"role": role, "content": text})
    return messages


def state_line(own_offer: float | None, their_offer: float | None, money: Callable[[float], str]) -> str:
    yours = money(own_offer) if own_offer is not None else "none"
    theirs = money(their_offer) if their_offer is not None else "none"
    return f"Standing offers: yours {yours}; theirs {theirs}."


def extraction_prompt(speaker: Speaker, message: str, standing_offer: float | None, currency: str) -> str:
    standing = f"{standing_offer:,.0f}" if standing_offer is not None else None
    return render("extract_action.j2", speaker=speaker, message=message, standing_offer=standing, currency=currency)


def one_call_suffix() -> str:
    return render("one_call_suffix.j2")
