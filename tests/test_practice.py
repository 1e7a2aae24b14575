"""Live practice: command parsing, the person's turn policy, practice levels, the scorecard, and a whole
session through the engine against the fake provider (undo replays, the hint is never sent, the saved
folder is read by the project's own readers)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.agents import TurnRequest
from sandbox.branching import BranchError, branch_experiment
from sandbox.catalog import CatalogError, DifficultyError, at_difficulty, load_catalog
from sandbox.episode import play_episode
from sandbox.experiment import BranchFrom, ExperimentSpec, expand, resolve_branch
from sandbox.judge import load_rubric
from sandbox.practice.commands import Command, CommandError, parse_line, parse_price
from sandbox.practice.events import Notice, Prompt, Said, Scored, Suggestion, Undone
from sandbox.practice.human import EndPractice, HumanPolicy, Restart, Undo
from sandbox.practice.session import PracticeSetup, practice_cast, practice_spec
from sandbox.profiles import Profiles
from sandbox.runfolder import RunFolder
from sandbox.schemas import ActionKind, ModelSettings
from tests.fake_provider import FakeProvider, Reply

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- a fake provider for practice

PROSPECT_LINES = [
    ("Your price is too high. I can pay 18,000.", 18000),
    ("Fine, 21,000 then, and that is final.", 21000),
    ("Still 21,000 from me.", 21000),
]
HINT_LINE = "What does the manual work cost you each month today?"
LOWEST = "Holds boundaries"  # the criterion the fake judge scores 2, quoting the person's last rep turn


def practice_responder(prospect_lines=PROSPECT_LINES, hint=HINT_LINE, low: str = LOWEST, score: int = 4):
    """Answers a practice session's requests by what they are: the prospect agent's turn (its next line by
    how many it has said), the hint (the rep's prompt), and judge verdicts quoting a rep turn, so every
    verdict is verified; ``low`` gets 2 and quotes the last rep turn, the rest ``score`` and the first."""

    def respond(payload: dict[str, Any]) -> Reply:
        messages = payload["messages"]
        system = str(messages[0]["content"])
        if system.startswith("You are Dana"):
            said = sum(1 for m in messages if m["role"] == "assistant")
            line, price = prospect_lines[min(said, len(prospect_lines) - 1)]
            turn = {"message": line, "action": "offer", "price": price, "terms": None}
            return Reply(content=json.dumps(turn))
        if system.startswith("You are Jordan"):
            return Reply(content=json.dumps({"message": hint, "action": "none", "price": None, "terms": None}))
        user = str(messages[-1]["content"])
        name = re.search(r"Criterion: (.*)", user).group(1).strip()
        reps = re.findall(r"\[turn (\d+)\] REP: (.*)", user)
        turn, text = reps[-1] if name == low else reps[0]
        verdict = {"score": 2 if name == low else score, "rationale": f"Judged {name}.", "evidence": []}
        verdict["evidence"] = [{"turn": int(turn), "quote": text.strip()}]
        return Reply(content=json.dumps(verdict))

    return respond


def agent_settings(api_base: str) -> ModelSettings:
    return ModelSettings(model="openai/gpt-4o-mini", api_base=api_base)


class ScriptedIO:
    """A face that types the given lines and keeps everything the session showed."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        self.shown: list[Any] = []
        self.prompts: list[Prompt] = []

    async def read(self, prompt: Prompt) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)

    def show(self, event: Any) -> None:
        self.shown.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.shown if isinstance(e, kind)]


# --------------------------------------------------------------------------- commands


def test_plain_text_is_a_message_and_commands_parse():
    assert parse_line("  Hello Dana  ") == Command("say", message="Hello Dana")
    assert parse_line("") is None and parse_line("   ") is None
    assert parse_line("/offer 21,600 For two years.") == Command("offer", message="For two years.", price=21600)
    assert parse_line("/offer $21.6k") == Command("offer", price=21600)
    assert parse_line("/accept Deal.") == Command("accept", message="Deal.")
    assert parse_line("/WALK") == Command("walk")
    assert parse_line("/end").name == "quit"
    assert parse_price("19200") == 19200 and parse_price("lots") is None


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/offer", "/offer needs a price"),
        ("/offer cheap", "'cheap' is not a price"),
        ("/offer 0", "'0' is not a price"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/hint please", "/hint takes nothing after it"),
    ],
)
def test_a_bad_command_is_a_one_line_error(line, says):
    with pytest.raises(CommandError, match=re.escape(says)) as caught:
        parse_line(line)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- the person's policy


def request(standing: float | None = None) -> TurnRequest:
    return TurnRequest(
        speaker="rep",
        system_prompt="x",
        conversation=[],
        own_name="Jordan",
        other_name="Dana",
        standing_offer=standing,
        currency="USD",
        seed=1000,
    )


def human(io: ScriptedIO, can_undo: bool = True) -> tuple[HumanPolicy, list[str]]:
    hints: list[str] = []

    async def hint() -> None:
        hints.append("asked")

    catalog = load_catalog(ROOT / "personas")
    return HumanPolicy(io, catalog.scenario("saas-seats"), hint, lambda: can_undo, lambda: 3), hints


async def test_bad_lines_are_answered_and_the_turn_waits_for_a_good_one():
    io = ScriptedIO(["/offer", "/bogus", "", "/help", "/hint", "/accept", "What do you use today?"])
    policy, hints = human(io)
    result = await policy.take_turn(request(standing=None))
    assert result.message == "What do you use today?" and result.action.kind is ActionKind.NONE
    errors = [n.text for n in io.of(Notice) if n.level == "error"]
    assert errors[0].startswith("/offer needs a price") and errors[1].startswith("unknown command /bogus")
    assert errors[2] == "nothing to accept: Dana has no offer on the table"  # no prospect offer yet
    assert hints == ["asked"] and any("/undo" in n.text for n in io.of(Notice))
    assert [p.turn for p in io.prompts] == [3] * 7


async def test_actions_get_a_message_that_states_them():
    policy, _ = human(ScriptedIO(["/offer 21,600"]))
    result = await policy.take_turn(request())
    assert result.action.kind is ActionKind.OFFER and result.action.price == 21600
    assert result.message == "I can offer 21,600 USD."
    policy, _ = human(ScriptedIO(["/accept"]))
    accepted = await policy.take_turn(request(standing=20000))
    assert accepted.action.kind is ActionKind.ACCEPT and "20,000 USD" in accepted.message
    policy, _ = human(ScriptedIO(["/offer 20000 That is my number"]))
    kept = await policy.take_turn(request())
    assert kept.message == "That is my number" and kept.action.price == 20000  # the engine notes it unstated


@pytest.mark.parametrize(("line", "control"), [("/undo", Undo), ("/restart", Restart), ("/quit", EndPractice)])
async def test_session_commands_unwind_the_turn(line, control):
    policy, _ = human(ScriptedIO([line]))
    with pytest.raises(control):
        await policy.take_turn(request())


async def test_undo_with_nothing_said_is_refused_and_end_of_input_ends_the_practice():
    io = ScriptedIO(["/undo"])
    policy, _ = human(io, can_undo=False)
    with pytest.raises(EndPractice):  # the lines ran out: EOF
        await policy.take_turn(request())
    assert io.of(Notice)[0].text.startswith("nothing to undo yet")


# --------------------------------------------------------------------------- practice levels


def test_every_shipped_prospect_has_easy_and_hard_levels_that_keep_a_deal_possible(catalog):
    floors = [s.rep_private.floor_price / s.list_price for s in catalog.scenarios.values()]
    for prospect in catalog.prospects.values():
        easy, hard = at_difficulty(prospect, "easy"), at_difficulty(prospect, "hard")
        walk = [p.private.walk_away_ratio for p in (easy, prospect, hard)]
        assert walk[0] > walk[1] > walk[2], (prospect.id, walk)
        assert walk[2] > max(floors), prospect.id  # above every scenario's floor: a good rep can still close
        assert hard.private.behaviour != prospect.private.behaviour and hard.name.endswith("(hard)")
        assert hard.difficulty is None and at_difficulty(prospect, "normal") is prospect


def test_a_level_the_file_lacks_or_an_impossible_level_is_a_one_line_error(tmp_path, catalog):
    import shutil

    plain = catalog.prospect("price-haggler").model_copy(update={"difficulty": None})
    with pytest.raises(DifficultyError, match="prospect 'price-haggler' has no difficulty.hard block"):
        at_difficulty(plain, "hard")
    root = tmp_path / "personas"
    shutil.copytree(ROOT / "personas", root)
    path = root / "prospects" / "price-haggler.yaml"
    path.write_text(path.read_text().replace("walk_away_ratio: 0.86", "walk_away_ratio: 0.5"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(root)
    message = str(caught.value)
    assert "price-haggler.yaml" in message and "difficulty.hard" in message and "budget_ratio" in message
    assert "\n" not in message


def test_old_transcripts_and_prospects_without_levels_load_and_dump_as_before(catalog):
    plain = catalog.prospect("skeptic").model_copy(update={"difficulty": None})
    assert "difficulty" not in plain.model_dump()
    assert type(plain).model_validate(plain.model_dump()) == plain


# --------------------------------------------------------------------------- a whole session


def session_for(api_base: str, io: ScriptedIO, tmp_path: Path, **setup: Any):
    from sandbox.practice.session import PracticeSession, PracticeSetup
    from sandbox.profiles import Profiles

    settings = agent_settings(api_base)
    practice = PracticeSetup(
        prospect="price-haggler", scenario="saas-seats", agent_model=settings, judges=[settings], **setup
    )
    catalog = load_catalog(ROOT / "personas")
    profiles = Profiles([settings])
    return PracticeSession(practice, catalog, load_rubric(), profiles, io, runs_dir=tmp_path)


async def test_a_session_plays_through_the_engine_undoes_by_replay_and_is_saved_for_every_reader(tmp_path):
    from sandbox.branching import load_source
    from sandbox.runfolder import RunFolder

    lines = [
        "/hint",
        "Hi Dana, what does the manual work cost you today?",
        "/offer 22000 How about that?",
        "/undo",
        "/offer 21,600 for two years",
        "/accept",
        "",  # the dialogue has ended: Enter scores it
    ]
    io = ScriptedIO(lines)
    with FakeProvider(practice_responder()) as provider:
        session = session_for(provider.api_base, io, tmp_path)
        record = await session.run()
        prospect_turns = [r for r in provider.requests if str(r["messages"][0]["content"]).startswith("You are Dana")]
    assert record is not None
    transcript = load_source(str(record.transcript_path))
    said = [(t.speaker, t.message) for t in transcript.turns]
    assert said == [
        ("rep", "Hi Dana, what does the manual work cost you today?"),
        ("prospect", "Your price is too high. I can pay 18,000."),
        ("rep", "for two years"),
        ("prospect", "Fine, 21,000 then, and that is final."),
        ("rep", "Agreed: we have a deal at 21,000 USD."),
    ]
    # The undone exchange is gone; the prospect's turn 1 was replayed after the undo, not asked again.
    assert len(prospect_turns) == 3  # turn 1, the undone turn 3, and turn 3 again after the new offer
    assert transcript.turns[1].calls and transcript.spec.prefix is None
    assert "offer 21600 is not stated in the message; counted as offered" in transcript.turns[2].notes
    assert transcript.outcome.status.value == "deal" and transcript.outcome.price == 21000
    assert transcript.spec.strategy == "human" and transcript.spec.rep_model.model == "human"
    # The hint was shown as a suggestion and never said.
    (hint,) = io.of(Suggestion)
    assert hint.message == HINT_LINE and all(HINT_LINE not in m for _, m in said)
    undone = io.of(Undone)[0]
    assert undone.removed == [2, 3] and len(undone.kept) == 2
    # Scorecard: rubric mean over the 9 rep criteria (8 at 4, one at 2), the deal at 21,000 above the floor.
    card = record.scorecard
    assert card.counted == 9 and card.mean == pytest.approx((8 * 4 + 2) / 9) and card.verdict == "pass"
    assert card.brief_kept and card.warnings == [
        "the judge openai/gpt-4o-mini also played the prospect: self-preference risk"
    ]
    low = card.lowest
    assert low is not None and low.criterion == "holds-boundaries" and low.turn == 4
    assert low.suggestion == HINT_LINE  # what the hint strategy would have said at that turn
    boundaries = next(c for c in card.criteria if c.criterion == "holds-boundaries")
    assert boundaries.to_try is not None and boundaries.to_try.turn == 4 and boundaries.went_well is None
    assert boundaries.to_try.text.startswith("Judged Holds boundaries. Aim for level 3:")
    commitment = next(c for c in card.criteria if c.criterion == "prospect-commitment")
    assert not commitment.counts and "about the prospect" in commitment.note
    # Saved as a run folder of one episode, read by the one reader and by branching's loader.
    run = RunFolder(record.folder)
    (result,) = list(run.latest())
    assert result.status == "ok" and len(result.judgements) == 1 and result.transcript == transcript
    assert load_source(str(record.folder)) == transcript
    manifest = run.manifest()
    assert manifest["kind"] == "practice" and manifest["undos"] == 1 and manifest["hints"][0]["turn"] == 0
    assert json.loads((record.folder / "scorecard.json").read_text())["verdict"] == "pass"
    assert io.of(Scored)[0].saved == [str(record.folder), str(record.transcript_path)]
    assert [e.by_person for e in io.of(Said)] == [True, False, True, False, True, False, True]


async def test_a_prospect_practice_scores_only_what_applies_and_fails_a_broken_brief(tmp_path):
    lines = ["Hello. Honestly, my budget is 18,000.", "/accept Fine, deal.", ""]
    io = ScriptedIO(lines)

    def rep_reply(payload: dict[str, Any]) -> Reply:
        system = str(payload["messages"][0]["content"])
        if system.startswith("You are Jordan"):
            return Reply(content=json.dumps({"message": "Hi Dana, it is 24,000.", "action": "none"}))
        user = str(payload["messages"][-1]["content"])
        if "Criterion:" not in user:  # the persona agent's line for the lowest-scored moment
            return Reply(content=json.dumps({"message": "I would ask what it includes first.", "action": "none"}))
        reps = re.findall(r"\[turn (\d+)\] PROSPECT: (.*)", user)
        turn, text = reps[0]
        verdict = {"score": 5, "rationale": "Clear.", "evidence": [{"turn": int(turn), "quote": text.strip()}]}
        return Reply(content=json.dumps(verdict))

    with FakeProvider(rep_reply) as provider:
        session = session_for(provider.api_base, io, tmp_path, side="prospect", difficulty="hard")
        record = await session.run()
    card = record.scorecard
    assert card.side == "prospect" and "the rubric is written about the rep" in card.scope
    counted = sorted(c.criterion for c in card.criteria if c.counts)
    assert counted == ["prospect-commitment", "relationship-health"] and card.mean == 5
    # The hard level's budget (0.72 of list: 17,280) was not said, but the deal at 24,000 is above the hard
    # walk-away of 20,640: a demanding trainer fails that whatever the rubric says.
    assert not card.brief_kept and card.verdict == "fail"
    assert any("prospect accepted 24,000 USD, above its walk-away of 20,640 USD" in f for f in card.brief_findings)
    saved = json.loads(record.transcript_path.read_text())
    assert saved["cast"]["prospect"]["name"].endswith("(hard)") and saved["spec"]["prospect_model"]["model"] == "human"


async def test_quitting_before_saying_anything_saves_nothing(tmp_path):
    io = ScriptedIO(["/quit"])
    with FakeProvider(practice_responder()) as provider:
        record = await session_for(provider.api_base, io, tmp_path).run()
    assert record is None and not (tmp_path / "practice").exists()
    assert io.of(Notice)[-1].text.startswith("you ended the session before saying anything")


async def test_quitting_mid_dialogue_scores_what_was_said(tmp_path):
    io = ScriptedIO(
        ["What does the manual process cost you?", "/restart", "Hi Dana, what is the real problem?", "/quit"]
    )
    with FakeProvider(practice_responder()) as provider:
        record = await session_for(provider.api_base, io, tmp_path).run()
    transcript = json.loads(record.transcript_path.read_text())
    assert [t["message"] for t in transcript["turns"]][0] == "Hi Dana, what is the real problem?"
    assert (
        transcript["outcome"]["status"] == "max_turns"
        and "the person ended the practice" in transcript["outcome"]["reason"]
    )
    assert record.scorecard.verdict in {"pass", "fail"} and record.scorecard.counted == 9


# --------------------------------------------------------------------------- levels in the spec, and a branch


def test_each_level_is_its_own_episode(catalog):
    specs = {}
    for level in ("easy", "normal", "hard"):
        setup = PracticeSetup(prospect="price-haggler", scenario="saas-seats", difficulty=level)
        specs[level] = practice_spec(setup, practice_cast(setup, catalog))
    assert {level: spec.difficulty for level, spec in specs.items()} == {l: l for l in specs}  # noqa: E741
    assert len({spec.episode_id for spec in specs.values()}) == 3


async def test_a_branch_of_a_hard_session_continues_against_the_hard_brief(tmp_path, catalog):
    io = ScriptedIO(["Hi Dana, what does the manual work cost you today?", "/offer 22000 How about that?", "/quit"])
    with FakeProvider(practice_responder()) as provider:
        record = await session_for(provider.api_base, io, tmp_path, difficulty="hard").run()
        assert record is not None
        spec = branch_experiment(str(record.folder), 2, ["humble-equal"], 1)
        (episode,) = expand(spec)
        settings = agent_settings(provider.api_base)
        played = await play_episode("b", episode, catalog, Profiles([settings]))
        prospect_prompts = [
            str(r["messages"][0]["content"])
            for r in provider.requests
            if r["messages"][0]["content"].startswith("You are Dana")
        ]
    assert spec.difficulty == "hard" and episode.difficulty == "hard"
    assert played.status == "ok" and played.transcript.cast.brief.walk_away_price == 20640  # normal: 22,080
    assert played.transcript.cast.prospect.name.endswith("(hard)")
    assert "the most you will pay is 20,640" in prospect_prompts[-1]
    # A spec naming another level than its source's is refused in one line.
    other = ExperimentSpec(
        id="b",
        strategies=["humble-equal"],
        difficulty="easy",
        branch_from=BranchFrom(transcript=str(record.folder), at=2),
    )
    with pytest.raises(
        BranchError, match=r"^difficulty 'easy' differs from the source's 'hard'; a branch keeps its level$"
    ):
        resolve_branch(other)


# --------------------------------------------------------------------------- the session as an episode


def session_lines() -> list[str]:
    return ["Hi Dana, what does the manual work cost you today?", "/offer 21,600 for two years", "/accept", ""]


async def test_a_saved_session_is_a_run_the_report_and_the_examples_read(tmp_path):
    from typer.testing import CliRunner

    from sandbox.cli import app
    from sandbox.runfolder import RunFolder
    from sandbox.runner import manifest_for

    with FakeProvider(practice_responder()) as provider:
        record = await session_for(provider.api_base, ScriptedIO(session_lines()), tmp_path).run()
    run = RunFolder(record.folder)
    manifest = run.manifest()
    (result,) = list(run.latest())
    # The manifest a run writes, with the session's keys beside it; its spec plays this very episode.
    spec = ExperimentSpec.model_validate(manifest["spec"])
    assert set(manifest_for(spec, "x", None, 1)) <= set(manifest)
    assert manifest["spec_fingerprint"] == spec.fingerprint and manifest["planned_episodes"] == 1
    assert [e.episode_id for e in expand(spec)] == [result.episode_id] and spec.strategies == ["human"]
    assert manifest["run_id"] == result.run_id == record.session_id and "human" not in manifest["models"]
    calls = result.transcript.calls + [c for j in result.judgements for c in j.calls]
    assert result.model_calls == len(calls) > len(result.transcript.calls)  # the turns' and the judge's calls
    assert result.cost_usd == pytest.approx(sum(c.cost_usd for c in calls)) and result.cost_usd > 0
    cli = CliRunner()
    report = cli.invoke(app, ["report", str(record.folder)])
    assert report.exit_code == 0, report.output
    assert f"Spec `{record.session_id}`: a sandbox practice session" in run.report_md_path.read_text()
    examples = cli.invoke(app, ["examples", str(record.folder)])
    assert examples.exit_code == 0, examples.output
    assert list(run.examples_dir.iterdir())


async def test_a_bug_in_judging_a_session_saves_it_as_a_failed_episode_with_the_reason(tmp_path, monkeypatch):
    import sandbox.episode

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("judge broke")

    monkeypatch.setattr(sandbox.episode, "judge_panel", broken)
    with FakeProvider(practice_responder()) as provider:
        record = await session_for(provider.api_base, ScriptedIO(session_lines()), tmp_path).run()
    (result,) = list(RunFolder(record.folder).latest())
    assert result.status == "failed" and result.error == "after the negotiation: RuntimeError: judge broke"
    assert result.transcript is not None and len(result.transcript.turns) == 5
    assert record.scorecard.verdict == "unscored" and record.scorecard.counted == 0


def test_a_side_typed_by_a_person_is_known_by_its_profile_and_given_to_an_agent_in_a_branch(tmp_path, catalog):
    import asyncio

    from sandbox.engine import negotiate
    from sandbox.practice.session import HUMAN_MODEL
    from sandbox.profiles import is_person
    from tests.scripted import ScriptedPolicy, say

    agent = ModelSettings(model="openai/gpt-4o-mini", temperature=0.3)
    # A person's side however its settings were written (here with a temperature, as a hand-edited file has it).
    person = ModelSettings(model="human", temperature=0.2)
    assert is_person(HUMAN_MODEL) and is_person(person) and not is_person(agent)
    setup = PracticeSetup(prospect="price-haggler", scenario="saas-seats", agent_model=agent)
    cast = practice_cast(setup, catalog)
    spec = practice_spec(setup, cast).model_copy(update={"rep_model": person})
    rep = ScriptedPolicy([say("Hi Dana, what does it cost you today?"), say("Tell me more.")])
    prospect = ScriptedPolicy([say("Too much. 18,000.", "offer", 18000), say("Hmm.")])
    path = tmp_path / "session.json"
    path.write_text(asyncio.run(negotiate(spec, cast, rep, prospect)).model_dump_json())
    branch = branch_experiment(str(path), 2, ["humble-equal"], 1)
    assert branch.models.rep == [agent] == branch.models.prospect


def test_the_scorecard_holds_the_person_to_their_own_brief_only(catalog):
    from sandbox.engine import build_cast
    from sandbox.practice.scorecard import build_scorecard
    from sandbox.schemas import Action, EpisodeSpec, Outcome, Transcript, Turn

    spec = EpisodeSpec(strategy="assertive-consultant", prospect="price-haggler", scenario="saas-seats")
    said = [
        ("rep", "Fine, 15,000.", Action(kind="offer", price=15000)),  # below the rep's floor of 19,200
        ("prospect", "I would go to 22,080 at most.", Action()),  # the prospect's walk-away said
        ("rep", "It is 24,000.", Action()),
        ("prospect", "OK, deal.", Action(kind="accept")),  # above its walk-away
    ]
    turns = [Turn(index=i, speaker=who, message=text, action=action) for i, (who, text, action) in enumerate(said)]
    outcome = Outcome(status="deal", price=24000, decided_by="prospect")
    t = Transcript(episode_id="x", spec=spec, cast=build_cast(spec, catalog), turns=turns, outcome=outcome)
    cards = {side: build_scorecard(t, [], load_rubric(), side, 3.5, "a deal") for side in ("rep", "prospect")}
    assert cards["rep"].brief_findings == ["turn 0: rep offered 15,000 USD, below its floor of 19,200 USD"]
    assert cards["prospect"].brief_findings == [
        "turn 1: prospect disclosed its walk-away price (22,080 USD)",
        "turn 3: prospect accepted 24,000 USD, above its walk-away of 22,080 USD",
    ]
    assert not cards["rep"].brief_kept and not cards["prospect"].brief_kept
