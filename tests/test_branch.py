"""Branches: a saved dialogue continued by another strategy shares its beginning exactly and only the
continuation is asked of a model (the fake provider counts what it is asked)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sandbox.branching import BranchError, load_source, prefix_at
from sandbox.cli import app
from sandbox.engine import build_cast, negotiate
from sandbox.experiment import expand, load_experiment
from sandbox.runfolder import RunFolder
from sandbox.schemas import EpisodeSpec
from tests.fake_provider import FakeProvider, Reply
from tests.scripted import ScriptedPolicy, say

runner = CliRunner()
OPENING = "Hi Dana, what does the manual work cost you today?"
SOURCE_SPEC = EpisodeSpec(
    strategy="eager-to-please", prospect="price-haggler", scenario="saas-seats", seed=7, max_turns=6
)


def source_file(tmp_path: Path, catalog) -> Path:  # noqa: ANN001
    """A six-turn dialogue that ran out of turns, saved as `sandbox negotiate --out` saves one."""
    rep = ScriptedPolicy([say(OPENING), say("I could do 21,000.", "offer", 21000), say("Whatever you prefer!")])
    prospect = ScriptedPolicy([say("Too much. 18,000.", "offer", 18000), say("Still too much."), say("Hmm.")])
    transcript = asyncio.run(negotiate(SOURCE_SPEC, build_cast(SOURCE_SPEC, catalog), rep, prospect))
    path = tmp_path / "source.json"
    path.write_text(transcript.model_dump_json())
    return path


def continuation(payload: dict[str, Any]) -> Reply:
    """A one-call turn that names its seed (so continuations differ), and a verdict quoting the shared
    beginning's turn 0 and the continuation's first rep turn."""
    seed = payload.get("seed")
    own = 3 if "about: the prospect" in str(payload["messages"][-1]["content"]) else 2  # its first turn
    return Reply(
        content=json.dumps(
            {
                "message": f"Let us look at the value first, option {seed}.",
                "action": "none",
                "price": None,
                "terms": None,
                "score": 4,
                "rationale": "Asks about the cost of the problem.",
                "evidence": [{"turn": 0, "quote": OPENING}, {"turn": own, "quote": "Let us look at the value first"}],
            }
        )
    )


def test_a_branch_point_must_leave_a_turn_and_not_follow_an_ending(tmp_path, catalog):
    path = source_file(tmp_path, catalog)
    source = load_source(str(path))
    assert prefix_at(source, 2, str(path)).turns[1].message == "Too much. 18,000."
    with pytest.raises(BranchError, match="outside the dialogue's turns 1..6"):
        prefix_at(source, 7, str(path))
    with pytest.raises(BranchError, match="no such transcript file or run folder"):
        load_source(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BranchError, match="bad.json: not a JSON transcript"):
        load_source(str(tmp_path / "bad.json"))


def test_a_spec_branch_from_gives_every_episode_the_sources_prefix(tmp_path, catalog):
    path = source_file(tmp_path, catalog)
    spec_path = tmp_path / "branch.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "id": "b",
                "strategies": ["humble-equal", "assertive-consultant"],
                "seeds": 2,
                "branch_from": {"transcript": str(path), "at": 3},
            }
        )
    )
    spec = load_experiment(spec_path, catalog)
    episodes = expand(spec)
    assert len(episodes) == 4 and {e.prospect for e in episodes} == {"price-haggler"}
    assert all(len(e.prefix.turns) == 3 and e.prefix.source_strategy == "eager-to-please" for e in episodes)
    spec_path.write_text(spec_path.read_text() + "prospects: [skeptic]\n")
    with pytest.raises(ValueError, match="branch_from.*differ from the source's 'price-haggler'"):
        load_experiment(spec_path, catalog)


def branch_args(path: Path, api_base: str, runs: Path, *more: str) -> list[str]:
    model = ["--model", "openai/gpt-4o-mini", "--api-base", api_base]
    return ["branch", str(path), "--at", "2", "--rep", "humble-equal", "--count", "2", *model] + [
        "--runs-dir", str(runs), "--no-cache", *more
    ]  # fmt: skip


def test_branch_command_replays_the_prefix_and_plays_only_the_continuations(tmp_path, catalog):
    path = source_file(tmp_path, catalog)
    with FakeProvider(continuation) as provider:
        result = runner.invoke(app, branch_args(path, provider.api_base, tmp_path / "runs"))
        asked = list(provider.requests)
        (folder,) = (tmp_path / "runs").iterdir()
        again = runner.invoke(app, branch_args(path, provider.api_base, tmp_path / "runs", "--resume", str(folder)))
        assert again.exit_code == 0, again.output
        assert len(provider.requests) == len(asked)  # a finished branch resumed plays nothing again
    assert result.exit_code == 0, result.output
    assert "2 turns replayed (played by eager-to-please)" in result.output
    results = sorted(RunFolder(folder).latest(), key=lambda r: r.spec.seed)
    assert [r.status for r in results] == ["ok", "ok"]
    for r in results:
        said = [t.message for t in r.transcript.turns]
        assert said[:2] == [OPENING, "Too much. 18,000."] and len(said) == 6
        assert all(t.calls == [] for t in r.transcript.turns[:2])
        assert all(t.calls for t in r.transcript.turns[2:])
        assert r.transcript.cast.strategy.id == "humble-equal" and r.judgements
    assert results[0].transcript.turns[2].message != results[1].transcript.turns[2].message
    # The judge is told which turns are shared, and a quote from them does not count: the new rep
    # is scored on what it said, not on what the source's rep said before it took over.
    judge_prompts = [str(r["messages"][-1]["content"]) for r in asked if "Criterion:" in str(r["messages"][-1])]
    assert judge_prompts and all("Turns 0 to 1 are a shared beginning" in p for p in judge_prompts)
    for r in results:
        for score in r.judgements[0].scores:
            by_turn = {e.turn: e for e in score.evidence}
            assert not by_turn[0].verified and "shared beginning" in by_turn[0].problem
            assert by_turn[max(by_turn)].verified and score.supported
    # 2 continuations x 4 played turns x one call each, plus one verdict per criterion per episode:
    # nothing was asked to say a replayed turn again.
    judged = sum(len(r.judgements[0].scores) for r in results)
    # The pack shows the shared beginning once and each continuation beside the others.
    page = (folder / "examples" / "branch" / "branch.html").read_text()
    assert "pack: " in result.output and (folder / "examples" / "branch" / "branch.md").is_file()
    assert page.count(OPENING) == 1 and page.count("Too much. 18,000.") == 1
    assert all(r.transcript.turns[2].message.split(",")[-1] in page for r in results)  # after the <mark>ed quote
    assert "humble-equal, seed 1" in page and "humble-equal, seed 2" in page
    assert len(asked) == 2 * 4 + judged


def test_a_side_a_person_played_is_given_the_agents_model_in_a_branch(tmp_path, catalog):
    from sandbox.branching import branch_experiment
    from sandbox.practice.session import HUMAN_MODEL

    path = source_file(tmp_path, catalog)
    source = load_source(str(path))
    practice = source.model_copy(update={"spec": source.spec.model_copy(update={"rep_model": HUMAN_MODEL})})
    path.write_text(practice.model_dump_json())  # what a practice session saves when the person is the rep
    spec = branch_experiment(str(path), 2, ["humble-equal"], 1)
    assert spec.models.rep == [source.spec.prospect_model] == spec.models.prospect
    assert HUMAN_MODEL not in spec.all_models()


def test_a_branch_episode_id_does_not_depend_on_how_the_source_path_was_typed(tmp_path, catalog, monkeypatch):
    from sandbox.branching import branch_experiment

    path = source_file(tmp_path, catalog)
    monkeypatch.chdir(tmp_path)
    ids = {
        expand(branch_experiment(ref, 2, ["humble-equal"], 1))[0].episode_id
        for ref in (str(path), "source.json", "./source.json")
    }
    assert len(ids) == 1


def test_spec_errors_name_the_field(tmp_path, catalog):
    from sandbox.catalog import CatalogError

    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump({"id": "s", "strategies": ["humble-equal"], "scenarios": ["saas-seats"]}))
    with pytest.raises(CatalogError, match="field 'prospects': .*must name at least one id"):
        load_experiment(spec_path, catalog)
    path = source_file(tmp_path, catalog)
    branch = {"id": "b", "strategies": ["humble-equal"], "branch_from": {"transcript": str(path), "at": 2}}
    spec_path.write_text(yaml.safe_dump(branch | {"openers": "both"}))
    with pytest.raises(CatalogError, match="openers: a branch opens as its source did"):
        load_experiment(spec_path, catalog)


def test_a_continuation_that_fails_is_shown_with_its_reason(tmp_path, catalog):
    path = source_file(tmp_path, catalog)

    def seed_two_fails_at_turn_three(payload: dict[str, Any]) -> Reply:
        return Reply(status=400, content=None) if payload.get("seed") == 2003 else continuation(payload)

    with FakeProvider(seed_two_fails_at_turn_three) as provider:
        result = runner.invoke(app, branch_args(path, provider.api_base, tmp_path / "runs", "--no-judge"))
    assert result.exit_code == 1, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    page = (folder / "examples" / "branch" / "branch.html").read_text()
    assert "humble-equal, seed 1" in page and "humble-equal, seed 2 (failed: turn 3:" in page
    assert "failed before saying anything" not in page


def test_a_branch_is_measured_on_its_own_turns_after_the_shared_beginning(tmp_path, catalog):
    from sandbox.metrics import faithfulness_records, outcome_metrics

    # The source's rep gives in below its floor (19,200) and says so, in the turns the branch shares.
    rep = ScriptedPolicy([say("Hello Dana?"), say("My floor is 19,200 but I can do 18,500.", "offer", 18500)])
    prospect = ScriptedPolicy([say("Too much. 18,000.", "offer", 18000), say("Hmm.")])
    source = asyncio.run(negotiate(SOURCE_SPEC, build_cast(SOURCE_SPEC, catalog), rep, prospect))
    assert outcome_metrics(source).faithfulness_violations == 2
    prefix = prefix_at(source, 4, "source.json")
    spec = SOURCE_SPEC.model_copy(update={"strategy": "humble-equal", "prefix": prefix})
    new_rep = ScriptedPolicy([say("What would 20,000 change for you?", "offer", 20000)])
    branch = asyncio.run(
        negotiate(spec, build_cast(spec, catalog), new_rep, ScriptedPolicy([say("We accept.", "accept")]))
    )
    measured = outcome_metrics(branch)
    assert branch.played_from == 4 and faithfulness_records(branch) == []
    assert measured.faithfulness_violations == 0 and measured.rep_offers_below_floor == 0
    # Talk share and questions are the new rep's; 20,000 raises the 18,500 standing, so no concession.
    assert measured.rep_questions == 1 and measured.rep_concessions == 0
    assert measured.deal and measured.final_price == 20000 and measured.turns == 6
