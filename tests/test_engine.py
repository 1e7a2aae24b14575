from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from sandbox.catalog import CatalogError, load_catalog
from sandbox.engine import build_cast, negotiate, turn_seed
from sandbox.experiment import ExperimentSpec, expand, load_experiment
from sandbox.schemas import Action, ActionKind, EpisodeSpec, ModelSettings, OutcomeStatus, Prefix, PrefixTurn
from tests.scripted import ScriptedPolicy, junk_failure, say

SPEC = EpisodeSpec(strategy="assertive-consultant", prospect="price-haggler", scenario="saas-seats", max_turns=8)


async def run(catalog, rep_lines, prospect_lines, spec=SPEC):
    rep, prospect = ScriptedPolicy(rep_lines), ScriptedPolicy(prospect_lines)
    transcript = await negotiate(spec, build_cast(spec, catalog), rep, prospect)
    return transcript, rep, prospect


async def test_deal_only_when_the_other_sides_standing_offer_is_accepted(catalog):
    transcript, _, _ = await run(
        catalog,
        [say("What does the manual work cost you today?"), say("I can do 21,600 for two years.", "offer", 21600)],
        [say("Your price is too high. 18,000.", "offer", 18000), say("Deal at 21,600.", "accept")],
    )
    assert transcript.outcome.status is OutcomeStatus.DEAL
    assert transcript.outcome.price == 21600
    assert transcript.outcome.decided_by == "prospect"
    assert [t.speaker for t in transcript.turns] == ["rep", "prospect", "rep", "prospect"]


async def test_list_price_is_on_the_table_from_the_start(catalog):
    transcript, _, _ = await run(catalog, [say("Hello, what brings you here?")], [say("Fine, we take it.", "accept")])
    assert transcript.outcome.status is OutcomeStatus.DEAL
    assert transcript.outcome.price == 24000


async def test_accept_without_a_standing_offer_is_talk_not_a_deal(catalog):
    transcript, _, _ = await run(
        catalog,
        [say("Hi Dana."), say("Sure, agreed.", "accept"), say("Anything else?")],
        [say("Hello."), say("Hmm.")],
        EpisodeSpec(**{**SPEC.model_dump(), "max_turns": 4}),
    )
    assert transcript.outcome.status is OutcomeStatus.MAX_TURNS
    accept_turn = transcript.turns[2]
    assert accept_turn.action.kind is ActionKind.NONE
    assert any("no standing offer" in note for note in accept_turn.notes)


async def test_rejection_withdraws_the_offer_it_rejects(catalog):
    transcript, _, _ = await run(
        catalog,
        [say("No, I cannot do 15,000.", "reject"), say("OK then.", "accept")],
        [say("15,000 and we sign.", "offer", 15000), say("Your call.")],
        EpisodeSpec(**{**SPEC.model_dump(), "opener": "prospect", "max_turns": 4}),
    )
    assert transcript.outcome.status is OutcomeStatus.MAX_TURNS
    assert transcript.turns[3].action.kind is ActionKind.NONE


async def test_walk_away_ends_the_episode(catalog):
    transcript, _, _ = await run(catalog, [say("It is 24,000, take it or leave it.")], [say("Goodbye.", "walk_away")])
    assert transcript.outcome.status is OutcomeStatus.WALK_AWAY
    assert transcript.outcome.decided_by == "prospect"
    assert len(transcript.turns) == 2


async def test_max_turns(catalog):
    transcript, rep, prospect = await run(catalog, [say("Tell me more?")] * 10, [say("Well...")] * 10)
    assert transcript.outcome.status is OutcomeStatus.MAX_TURNS
    assert len(transcript.turns) == SPEC.max_turns
    assert len(rep.requests) == len(prospect.requests) == SPEC.max_turns // 2


async def test_model_failure_is_recorded_never_a_deal(catalog):
    transcript, _, _ = await run(catalog, [say("Hello?"), junk_failure()], [say("Fine, deal.", "accept")])
    # The prospect accepted the list price on turn 1, so use a failing first turn instead:
    assert transcript.outcome.status is OutcomeStatus.DEAL
    transcript, _, _ = await run(catalog, [say("Hello?"), junk_failure()], [say("Hi.")])
    assert transcript.outcome.status is OutcomeStatus.FAILED
    assert transcript.outcome.price is None
    assert "junk twice" in transcript.outcome.reason and transcript.outcome.reason.startswith("turn 2")
    assert transcript.failed_turn_calls[0].error == "junk"
    assert len(transcript.turns) == 2


async def test_prospect_can_open_and_seeds_differ_per_turn(catalog):
    spec = EpisodeSpec(**{**SPEC.model_dump(), "opener": "prospect", "seed": 7, "max_turns": 4})
    transcript, rep, prospect = await run(catalog, [say("a?")] * 2, [say("b")] * 2, spec)
    assert transcript.turns[0].speaker == "prospect"
    seeds = [r.seed for r in prospect.requests] + [r.seed for r in rep.requests]
    assert sorted(seeds) == [turn_seed(7, i) for i in range(4)]
    # The opener's first prompt carries a cue to start; the other side sees the opener's words.
    assert prospect.requests[0].conversation[0]["role"] == "user"
    assert rep.requests[0].conversation[-1] == {"role": "user", "content": "b"}


def test_episode_id_is_deterministic_and_sensitive_to_axes():
    a = EpisodeSpec(strategy="connection", prospect="skeptic", scenario="saas-seats", seed=1)
    assert a.episode_id == EpisodeSpec(strategy="connection", prospect="skeptic", scenario="saas-seats").episode_id
    assert (
        a.episode_id != EpisodeSpec(strategy="connection", prospect="skeptic", scenario="saas-seats", seed=2).episode_id
    )


async def test_an_offer_its_message_does_not_state_counts_noted_or_is_dropped_as_the_side_says(catalog):
    rep_lines = [say("Compared to what?", "offer", 4.87)]
    prospect_lines = [say("Fine, we accept.", "accept")]
    counted, _, _ = await run(catalog, list(rep_lines), list(prospect_lines))
    assert counted.turns[0].action.price == 4.87  # the default: the offer counts...
    assert counted.turns[0].notes == ["offer 4.87 is not stated in the message; counted as offered"]  # ...noted
    assert counted.outcome.price == 4.87
    rep, prospect = ScriptedPolicy(list(rep_lines)), ScriptedPolicy(list(prospect_lines))
    dropped = await negotiate(SPEC, build_cast(SPEC, catalog), rep, prospect, unstated_offers={"rep": "drop"})
    assert dropped.turns[0].action.kind is ActionKind.NONE
    assert dropped.turns[0].notes == ["offer 4.87 is not stated in the message; treated as no action"]
    assert dropped.outcome.price == 24000  # the list price still stood
    stated, _, _ = await run(catalog, [say("I can do $21.6k.", "offer", 21600)], [say("Deal.", "accept")])
    assert stated.turns[0].notes == [] and stated.outcome.price == 21600


def test_which_sides_unstated_offers_count_comes_from_their_profiles():
    from sandbox.profiles import resolve
    from sandbox.schemas import ModelSettings

    hosted = ModelSettings(model="openai/gpt-4o-mini")
    assert resolve(hosted).unstated_offers == "count"
    assert resolve(hosted.model_copy(update={"unstated_offers": "drop"})).unstated_offers == "drop"
    assert resolve(ModelSettings(), embedded_api_base="http://127.0.0.1:1/v1").unstated_offers == "drop"  # two-call
    two_call = ModelSettings(model="openai/gpt-4o-mini", turn_mode="two-call", unstated_offers="count")
    assert resolve(two_call).unstated_offers == "drop"  # the extractor's price, not the speaker's: never counted
    # Left out of dumps at its default, so episode ids and spec fingerprints are what they were.
    assert "unstated_offers" not in hosted.model_dump()
    assert (
        EpisodeSpec(strategy="a", prospect="b", scenario="c").episode_id
        == EpisodeSpec(
            strategy="a", prospect="b", scenario="c", rep_model=ModelSettings(unstated_offers="auto")
        ).episode_id
    )
    assert ModelSettings(unstated_offers="drop").model_dump()["unstated_offers"] == "drop"


async def test_a_prefix_is_replayed_as_said_and_the_agents_take_over_after_it(catalog):
    from sandbox.schemas import Prefix, PrefixTurn

    said = [
        PrefixTurn(speaker="rep", message="Hi Dana, what does the manual work cost you?"),
        PrefixTurn(speaker="prospect", message="Too much. I can pay 18,000.", action={"kind": "offer", "price": 18000}),
    ]
    prefix = Prefix(source="t.json", source_episode_id="abc", source_strategy="eager-to-please", turns=tuple(said))
    spec = EpisodeSpec(**{**SPEC.model_dump(), "prefix": prefix})
    transcript, rep, prospect = await run(catalog, [say("Then we have a deal at 18,000.", "accept")], [])
    assert transcript.outcome.status is OutcomeStatus.MAX_TURNS  # no prefix: the accept had no prospect offer
    transcript, rep, prospect = await run(catalog, [say("Then we have a deal at 18,000.", "accept")], [], spec)
    assert [t.message for t in transcript.turns[:2]] == [t.message for t in said]
    assert transcript.turns[0].calls == [] and transcript.prefix_turns == 2
    assert transcript.outcome.status is OutcomeStatus.DEAL and transcript.outcome.price == 18000
    # The rep saw the replayed history, and its one call got turn 2's seed.
    assert len(rep.requests) == 1 and prospect.requests == []
    assert "18,000" in str(rep.requests[0].conversation) and rep.requests[0].seed == turn_seed(spec.seed, 2)
    assert spec.episode_id != SPEC.episode_id


def test_a_prefix_must_alternate_from_the_opener_and_leave_turns_to_play():
    import pytest
    from pydantic import ValidationError

    from sandbox.schemas import Prefix, PrefixTurn

    wrong = Prefix(
        source="t", source_episode_id="a", source_strategy="s", turns=(PrefixTurn(speaker="prospect", message="Hi"),)
    )
    with pytest.raises(ValidationError, match="prefix turn 0 is the prospect's"):
        EpisodeSpec(**{**SPEC.model_dump(), "prefix": wrong})
    # An episode without a prefix keeps the id it had before prefixes existed.
    assert "prefix" not in SPEC.model_dump()


async def test_a_prefix_that_ends_the_dialogue_is_refused(catalog):
    import pytest

    from sandbox.schemas import Prefix, PrefixTurn

    said = (PrefixTurn(speaker="rep", message="Bye.", action={"kind": "walk_away"}),)
    prefix = Prefix(source="t", source_episode_id="a", source_strategy="s", turns=said)
    with pytest.raises(ValueError, match="prefix turn 0 ends the dialogue"):
        await run(catalog, [], [], EpisodeSpec(**{**SPEC.model_dump(), "prefix": prefix}))


# --------------------------------------------------------------------------- practice levels in a spec


def test_an_episode_spec_at_a_level_plays_the_prospects_brief_at_that_level(catalog):
    levels = {level: EpisodeSpec(**{**SPEC.model_dump(), "difficulty": level}) for level in ("easy", "normal", "hard")}
    walk = {level: build_cast(spec, catalog).brief.walk_away_price for level, spec in levels.items()}
    assert walk == {"easy": 24000, "normal": 22080, "hard": 20640}  # 1.0, 0.92 and 0.86 of 24,000
    assert build_cast(levels["hard"], catalog).prospect.name.endswith("(hard)")
    assert len({spec.episode_id for spec in levels.values()}) == 3
    assert levels["normal"] == SPEC and "difficulty" not in SPEC.model_dump()


def test_episode_ids_and_spec_fingerprints_from_before_practice_levels_are_unchanged():
    plain = EpisodeSpec(
        strategy="humble-equal",
        prospect="price-haggler",
        scenario="saas-seats",
        seed=3,
        rep_model=ModelSettings(model="openai/gpt-4o-mini"),
    )
    turns = (PrefixTurn(speaker="rep", message="Hello.", action=Action()),)
    prefix = Prefix(source="x.json", source_episode_id="abc", source_strategy="server", turns=turns)
    branched = EpisodeSpec(strategy="humble-equal", prospect="price-haggler", scenario="saas-seats", prefix=prefix)
    # Computed before EpisodeSpec and ExperimentSpec had a difficulty.
    assert plain.episode_id == "c7bafeeb5cadc795" and branched.episode_id == "2d415c3b710203bb"
    axes = {"id": "q", "strategies": ["humble-equal"], "prospects": ["price-haggler"], "scenarios": ["saas-seats"]}
    assert ExperimentSpec(**axes).fingerprint == "cea8f4aef51a"
    assert ExperimentSpec(**axes, difficulty="hard").fingerprint != "cea8f4aef51a"


def test_an_experiment_plays_every_prospect_at_its_difficulty_and_refuses_a_level_a_file_lacks(tmp_path, catalog):
    spec_path = tmp_path / "hard.yaml"
    axes = {"id": "h", "strategies": ["humble-equal", "eager-to-please"], "prospects": ["price-haggler", "skeptic"]}
    spec_path.write_text(yaml.safe_dump({**axes, "scenarios": ["saas-seats"], "difficulty": "hard"}))
    episodes = expand(load_experiment(spec_path, catalog))
    assert len(episodes) == 4 and {e.difficulty for e in episodes} == {"hard"}
    root = tmp_path / "personas"
    shutil.copytree(Path(__file__).resolve().parent.parent / "personas", root)
    path = root / "prospects" / "skeptic.yaml"
    data = yaml.safe_load(path.read_text())
    data["difficulty"].pop("hard")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as caught:
        load_experiment(spec_path, load_catalog(root))
    assert re.fullmatch(
        r".*hard\.yaml: field 'difficulty': prospect 'skeptic' has no difficulty\.hard block.*", str(caught.value)
    )
