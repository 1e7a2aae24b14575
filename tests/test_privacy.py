"""Each side's prompt holds only its own private information."""

from __future__ import annotations

import json

from sandbox.engine import build_cast, negotiate
from sandbox.prompts import system_prompt_for
from sandbox.schemas import EpisodeSpec, brief_for
from tests.scripted import ScriptedPolicy, say


def private_prospect_strings(prospect, scenario) -> list[str]:
    brief = brief_for(prospect, scenario)
    p = prospect.private
    # A figure equal to the public list price is no secret (e.g. a walk-away of exactly list).
    figures = [x for x in (brief.budget, brief.walk_away_price) if x != scenario.list_price]
    return [
        *(scenario.money(x) for x in figures),
        p.real_need,
        p.wins_them_over,
        p.shuts_them_down,
        *p.alternatives,
        *p.behaviour,
        prospect.name,  # the catalog label names the persona's type
    ]


def private_rep_strings(strategy, scenario) -> list[str]:
    private = scenario.rep_private
    return [
        scenario.money(private.floor_price),
        *private.may_concede,
        *private.must_not_concede,
        strategy.summary,
        *strategy.guidance,
        strategy.on_price_pushback,
    ]


def test_system_prompts_keep_each_sides_secrets_for_every_combination(catalog):
    checked = 0
    for strategy in catalog.strategies.values():
        for prospect in catalog.prospects.values():
            for scenario in catalog.scenarios.values():
                brief = brief_for(prospect, scenario)
                rep_prompt = system_prompt_for("rep", strategy, prospect, scenario, brief, "")
                prospect_prompt = system_prompt_for("prospect", strategy, prospect, scenario, brief, "")
                for secret in private_prospect_strings(prospect, scenario):
                    assert secret not in rep_prompt, (strategy.id, prospect.id, scenario.id, secret)
                for secret in private_rep_strings(strategy, scenario):
                    assert secret not in prospect_prompt, (strategy.id, prospect.id, scenario.id, secret)
                # and each side does get its own
                assert scenario.money(scenario.rep_private.floor_price) in rep_prompt
                assert scenario.money(brief.walk_away_price) in prospect_prompt
                checked += 1
    assert checked == len(catalog.strategies) * len(catalog.prospects) * len(catalog.scenarios)


async def test_nothing_private_reaches_the_other_side_during_a_negotiation(catalog):
    spec = EpisodeSpec(strategy="value-redirect", prospect="demanding-king", scenario="saas-seats", max_turns=6)
    cast = build_cast(spec, catalog)
    rep = ScriptedPolicy([say("What would success look like?"), say("I can do 22,000.", "offer", 22000)] * 2)
    prospect = ScriptedPolicy([say("Half price or nothing."), say("Still too much.")] * 2)
    await negotiate(spec, cast, rep, prospect)
    shown_to_rep = json.dumps([(r.system_prompt, r.conversation) for r in rep.requests])
    shown_to_prospect = json.dumps([(r.system_prompt, r.conversation) for r in prospect.requests])
    for secret in private_prospect_strings(cast.prospect, cast.scenario):
        assert json.dumps(secret)[1:-1] not in shown_to_rep, secret
    for secret in private_rep_strings(cast.strategy, cast.scenario):
        assert json.dumps(secret)[1:-1] not in shown_to_prospect, secret
