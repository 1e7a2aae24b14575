"""``sandbox export RUN --format chat``: every line loads, roles alternate, the side and score filters
work, failed episodes never leave, and the other side's private brief never reaches the system prompt."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

from typer.testing import CliRunner

from sandbox.engine import opener_cue
from sandbox.export_chat import chat_messages, chat_records, export_chat
from sandbox.runfolder import RunFolder
from sandbox.schemas import Turn
from tests.handmade import ACCEPT, OPENING, episode, shipped, write_run
from tests.test_privacy import private_prospect_strings, private_rep_strings

runner = CliRunner()


def alternates(messages: list[dict[str, str]]) -> bool:
    roles = [m["role"] for m in messages]
    return roles[0] == "system" and roles[1] == "user" and all(a != b for a, b in pairwise(roles[1:]))


def chat_run(folder: Path) -> Path:
    return write_run(
        folder,
        [
            episode("assertive-consultant", 1, scores={"discovery": 5, "holds-boundaries": 4}),  # mean 4.5
            episode("eager-to-please", 1, status="walk_away", scores={"discovery": 2}),  # mean 2
            episode("humble-equal", 1, prospect="demanding-king", scores={"discovery": None}),  # no verified score
            episode("eager-to-please", 2, status="failed", error="provider down", scores={"discovery": 5}),
        ],
    )


def test_each_side_sees_its_own_prompt_its_turns_as_assistant_and_strict_alternation(tmp_path):
    run = chat_run(tmp_path / "run")
    result = next(RunFolder(run).latest())
    rep = chat_messages(result, "rep")
    cast = result.transcript.cast
    names = {"rep": cast.scenario.rep_name, "prospect": cast.prospect.display_name}
    assert [m["role"] for m in rep] == ["system", "user", "assistant", "user"]  # the rep opened: the engine's cue
    assert rep[1]["content"] == opener_cue("rep", names, cast.scenario.seller)
    assert rep[2]["content"] == OPENING and rep[3]["content"] == ACCEPT
    assert (
        rep[0]["content"].startswith("You are Jordan")
        and "Standing offers: yours 24,000 USD; theirs none." in rep[0]["content"]  # as the engine began
    )
    prospect = chat_messages(result, "prospect")
    assert [m["role"] for m in prospect] == ["system", "user", "assistant"]  # the rep's opening is its first user line
    assert prospect[0]["content"].startswith("You are Dana") and prospect[1]["content"] == OPENING
    assert "Standing offers: yours none; theirs 24,000 USD." in prospect[0]["content"]


def test_export_lines_load_alternate_and_never_hold_the_other_sides_brief(tmp_path):
    run = chat_run(tmp_path / "run")
    catalog = shipped()
    for side in ("rep", "prospect"):
        summary = export_chat(run, side)
        lines = summary.path.read_text().splitlines()
        assert summary.lines == len(lines) == 3 and summary.skipped == Counter({"failed": 1})  # failed: never
        for line in lines:
            record = json.loads(line)
            assert alternates(record["messages"]), record["messages"]
            meta = record["metadata"]
            assert meta["side"] == side and meta["outcome"] in {"deal", "walk_away"} and meta["episode_id"]
            prospect, scenario = catalog.prospect(meta["prospect"]), catalog.scenario(meta["scenario"])
            system = record["messages"][0]["content"]
            if side == "rep":
                for secret in private_prospect_strings(prospect, scenario):
                    assert secret not in system, secret
                assert scenario.money(scenario.rep_private.floor_price) in system  # and it has its own
            else:
                for secret in private_rep_strings(catalog.strategy(meta["strategy"]), scenario):
                    assert secret not in system, secret
    first = json.loads((run / "chat-rep.jsonl").read_text().splitlines()[0])["metadata"]
    assert first["strategy"] == "assertive-consultant" and first["score_mean"] == 4.5
    assert first["scores"] == {"discovery": 5.0, "holds-boundaries": 4.0}


def test_min_score_keeps_dialogues_whose_verified_mean_reaches_it(tmp_path):
    run = chat_run(tmp_path / "run")
    summary = export_chat(run, "rep", min_score=4, out=tmp_path / "good.jsonl")
    kept = [json.loads(line)["metadata"]["strategy"] for line in (tmp_path / "good.jsonl").read_text().splitlines()]
    assert kept == ["assertive-consultant"]
    assert summary.skipped == Counter({"failed": 1, "below min-score": 1, "no verified score": 1})


def test_a_transcript_where_one_side_speaks_twice_is_skipped_not_merged():
    result = episode("assertive-consultant", 1)
    turns = [*result.transcript.turns[:1], Turn(index=1, speaker="rep", message="And another thing.",
                                                action=result.transcript.turns[0].action)]  # fmt: skip
    broken = result.model_copy(update={"transcript": result.transcript.model_copy(update={"turns": turns})})
    skipped: Counter[str] = Counter()
    assert list(chat_records([broken], "rep", None, skipped)) == [] and skipped == Counter({"not alternating": 1})


def test_export_command_chat_prints_the_count_and_refuses_bad_options(tmp_path):
    from sandbox.cli import app

    run = chat_run(tmp_path / "run")
    out = tmp_path / "chat.jsonl"
    result = runner.invoke(app, ["export", str(run), "--format", "chat", "--side", "prospect", "--min-score", "2",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"written 2 dialogues to {out} (left out: 1 failed; 1 no verified score)" in result.output.replace("\n", "")
    assert all(alternates(json.loads(line)["messages"]) for line in out.read_text().splitlines())
    bad = runner.invoke(app, ["export", str(run), "--format", "chat", "--side", "judge"])
    assert bad.exit_code == 2 and "--side must be rep or prospect, not 'judge'" in bad.output
    table_only = runner.invoke(app, ["export", str(run), "--format", "csv", "--min-score", "4"])
    assert table_only.exit_code == 2 and "apply to --format chat only" in table_only.output
    unknown = runner.invoke(app, ["export", str(run), "--format", "xml"])
    assert unknown.exit_code == 2 and "--format must be parquet, csv or chat, not 'xml'" in unknown.output


def test_metadata_holds_the_tables_axes_of_the_episode(tmp_path):
    from sandbox.table import axes, rows

    result = next(RunFolder(chat_run(tmp_path / "run")).latest())
    (record,) = chat_records([result], "rep", None, Counter())
    table_row = rows(result)[0]
    assert axes(result) == {k: table_row[k] for k in axes(result)}  # the table's first columns
    assert {k: record["metadata"][k] for k in axes(result)} == axes(result)
    assert set(axes(result)) >= {"run_id", "episode_id", "strategy", "seed", "opener", "rep_model"}


def test_the_side_a_person_played_in_practice_is_skipped_the_agents_side_exported(tmp_path):
    from sandbox.practice.session import HUMAN_MODEL

    played = episode("assertive-consultant", 1)
    practice = played.model_copy(update={"spec": played.spec.model_copy(update={"rep_model": HUMAN_MODEL})})
    run = write_run(tmp_path / "run", [practice, episode("eager-to-please", 1)])
    rep = export_chat(run, "rep")
    assert rep.lines == 1 and rep.skipped == Counter({"played by a person": 1})
    (line,) = rep.path.read_text().splitlines()
    assert json.loads(line)["metadata"]["strategy"] == "eager-to-please"  # the agent-played episode only
    prospect = export_chat(run, "prospect")  # the agent played the prospect in that session: exported
    assert prospect.lines == 2 and prospect.skipped == Counter()
