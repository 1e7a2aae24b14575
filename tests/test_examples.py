"""Example dialogues for trainers: which episodes are picked, and what their files show."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sandbox.examples import ExamplesError, pick_examples, write_examples
from tests.conftest import ROOT
from tests.fake_provider import WALK_LINE, FakeProvider, deal_or_walk, spec_file
from tests.handmade import OPENING, episode, write_run

runner = CliRunner()


def frame(rows: list[tuple[str, str, str, float | None]]) -> pd.DataFrame:
    """(episode id, strategy, status, score_mean), one judge per episode."""
    return pd.DataFrame(
        [
            {"episode_id": e, "strategy": s, "status": st, "judge_model": "j", "score_mean": v, "m_turns": 4}
            for e, s, st, v in rows
        ]
    )


def test_highest_and_lowest_per_strategy_skip_failures_and_missing_scores():
    picks = pick_examples(
        frame(
            [
                ("a1", "alpha", "ok", 4.5),
                ("a2", "alpha", "ok", 2.0),
                ("a3", "alpha", "ok", 3.0),
                ("a4", "alpha", "failed", 5.0),  # failed: never an example, whatever it holds
                ("a5", "alpha", "ok", math.nan),  # not judged: no place in a ranking
                ("b1", "beta", "ok", 1.0),
                ("b2", "beta", "ok", 5.0),
            ]
        )
    )
    chosen = [(p.strategy, p.rank, p.episode_id) for p in picks]
    assert chosen == [
        ("alpha", "highest", "a1"),
        ("alpha", "lowest", "a2"),
        ("beta", "highest", "b2"),
        ("beta", "lowest", "b1"),
    ]
    assert picks[0].why == "highest score_mean of 3 alpha episodes (4.50)"


def test_ties_give_distinct_episodes_in_id_order_and_per_strategy_caps_at_half():
    picks = pick_examples(frame([(f"e{i}", "alpha", "ok", 3.0) for i in range(5)]), per_strategy=4)
    ids = [p.episode_id for p in picks]
    assert len(ids) == len(set(ids)) == 4  # 2 highest + 2 lowest: at most half the episodes each
    assert ids[:2] == ["e0", "e1"] and [p.rank for p in picks] == ["highest", "highest", "lowest", "lowest"]
    single = pick_examples(frame([("only", "alpha", "ok", 3.0)]))
    assert [(p.rank, p.episode_id) for p in single] == [("highest", "only")]


def test_unknown_column_and_nothing_scored_are_clear_errors():
    with pytest.raises(ExamplesError, match="unknown column 'score_nope'; choose one of: m_turns, score_mean"):
        pick_examples(frame([("a", "alpha", "ok", 3.0)]), by="score_nope")
    with pytest.raises(ExamplesError, match="no finished episode has a value for 'score_mean'"):
        pick_examples(frame([("a", "alpha", "ok", math.nan), ("b", "alpha", "failed", 4.0)]))


def test_examples_read_the_latest_line_of_each_episode(tmp_path):
    """An episode judged twice (a retry): its latest verdict ranks it and fills its handout."""
    first = episode("eager-to-please", 1, scores={"discovery": 5})
    retried = episode("eager-to-please", 1, scores={"discovery": 1})
    other = episode("eager-to-please", 2, scores={"discovery": 3})
    failed = episode("eager-to-please", 3, status="failed", error="boom")
    run = write_run(tmp_path / "run", [first, other, failed, retried])
    out, picks = write_examples(run)
    assert [(p.rank, p.episode_id, p.value) for p in picks] == [
        ("highest", other.episode_id, 3.0),
        ("lowest", first.episode_id, 1.0),
    ]
    lowest = next(out.glob("eager-to-please-lowest-*.md")).read_text()
    assert "(1.00)" in lowest and OPENING in lowest and "discovery 1" in lowest
    assert out == run / "examples" and (out / "README.md").exists()


def test_examples_command_writes_dialogues_with_the_hidden_brief_and_checked_quotes(tmp_path, monkeypatch):
    from sandbox.cli import app  # here, not above: the tests above need no CLI

    monkeypatch.setenv("OPENAI_API_KEY", "test-examples-not-a-real-key")
    with FakeProvider(deal_or_walk()) as provider:
        path = spec_file(tmp_path, provider.api_base, seeds=1)
        monkeypatch.chdir(ROOT)
        result = runner.invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-cache"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert f"sandbox examples {run} (dialogues)" in result.output  # the hint names the folder whole

    result = runner.invoke(app, ["examples", str(run)])
    assert result.exit_code == 0, result.output
    index = (run / "examples" / "README.md").read_text()
    files = sorted(p.name for p in (run / "examples").glob("*-*.md"))
    assert len(files) == 4 and all(f"({name})" in index for name in files)  # 2 strategies x highest, lowest
    page = (run / "examples" / "pack.html").read_text()  # the same picks as one pack: highest beside lowest
    assert "(pack.html)" in index and f"pack: {run / 'examples' / 'pack.html'}" in result.output.replace("\n", "")
    assert page.count('class="columns n2"') == 2 and page.count('<article class="dialogue"') == 4
    assert "<mark" in page and "What Morgan did not say" in page
    for strategy in ("eager-to-please", "assertive-consultant"):
        # the deal (judged 4) is the best episode, the skeptic's walk-away (judged 2) the worst
        best = (run / "examples" / next(f for f in files if f.startswith(f"{strategy}-highest"))).read_text()
        worst = (run / "examples" / next(f for f in files if f.startswith(f"{strategy}-lowest"))).read_text()
        assert "highest score_mean of 2" in best and "(4.00)" in best and "Fine, we accept." in best
        assert "lowest score_mean of 2" in worst and "(2.00)" in worst and WALK_LINE in worst
        assert "walk_away" in worst and "What Morgan did not say" in worst
        assert f'[1] "{WALK_LINE}"' in worst  # the judge's quote, verified against turn 1
        assert "cited by the judge: discovery 2" in worst
        assert "Real need:" in best and "The rep's floor was 19,200 USD." in best
        assert "embedded 135M model" not in best  # played by a hosted model: no embedded-model warning

    again = runner.invoke(app, ["examples", str(run), "--by", "m_turns", "--per-strategy", "2"])
    assert again.exit_code == 0, again.output
    rewritten = sorted(p.name for p in (run / "examples").glob("*-*.md"))
    assert len(rewritten) == 4 and "by `m_turns`" in (run / "examples" / "README.md").read_text()
    assert all(f"({name})" in (run / "examples" / "README.md").read_text() for name in rewritten)  # none stale

    bad = runner.invoke(app, ["examples", str(run), "--by", "m_status"])
    assert bad.exit_code == 2 and "unknown column 'm_status'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    other = tmp_path / "elsewhere"
    result = runner.invoke(app, ["examples", str(run), "--by", "m_turns", "--out", str(other)])
    assert result.exit_code == 0 and (other / "README.md").exists()
    assert not os.path.exists(run / "examples" / "elsewhere")


def test_handout_shows_a_below_floor_deal_in_the_scenarios_money_with_its_note_and_finding():
    from sandbox.examples import render_dialogue
    from sandbox.schemas import Action, ActionKind, Outcome, OutcomeStatus, Turn

    base = episode("assertive-consultant").transcript
    note = "offer 4.87 is not stated in the message; counted as offered"
    turns = [
        Turn(index=0, speaker="rep", message="Compared to what?", action=Action(kind=ActionKind.OFFER, price=4.87),
             notes=[note]),
        Turn(index=1, speaker="prospect", message="Fine, we accept.", action=Action(kind=ActionKind.ACCEPT)),
    ]  # fmt: skip
    outcome = Outcome(status=OutcomeStatus.DEAL, price=4.87, decided_by="prospect")
    text = render_dialogue(base.model_copy(update={"turns": turns, "outcome": outcome}), [], None, "Planted.")
    assert "*offer 4.87 USD*" in text and "deal at 4.87 USD, accepted by the prospect" in text  # not "5 USD"
    assert f"*Note: {note}*" in text
    assert "| Faithfulness | turn 0: rep offered 4.87 USD, below its floor of 19,200 USD |" in text
    assert "The rep's floor was 19,200 USD." in text


def test_fresh_examples_run_through_the_runner_and_become_a_pack(tmp_path, monkeypatch):
    """`sandbox examples --rep ...` on the fake provider: a run folder (judged, table written), then the pack;
    with --contrast, the same seeds for both strategies, paired side by side."""
    from sandbox.cli import app
    from sandbox.runfolder import RunFolder

    monkeypatch.chdir(ROOT)
    with FakeProvider(deal_or_walk()) as provider:
        base = ["examples", "--rep", "humble-equal", "--prospect", "price-haggler", "--scenario", "saas-seats"]
        base += ["--model", "openai/gpt-4o-mini", "--api-base", provider.api_base, "--no-cache", "--max-turns", "4"]
        alone = runner.invoke(app, [*base, "--count", "3", "--runs-dir", str(tmp_path / "alone")])
        paired = runner.invoke(
            app, [*base, "--count", "2", "--contrast", "eager-to-please", "--runs-dir", str(tmp_path / "paired")]
        )
    assert alone.exit_code == 0, alone.output
    (folder,) = (tmp_path / "alone").iterdir()
    text = alone.output.replace("\n", "")
    assert "playing 3 episodes: humble-equal x seeds 1..3" in text and f"run folder: {folder}" in text
    fresh = folder / "examples" / "fresh"  # its own folder: best/worst picks of this run cannot overwrite it
    assert f"pack: {fresh / 'pack.md'}" in text and f"pack: {fresh / 'pack.html'}" in text
    results = list(RunFolder(folder).latest())
    assert sorted(r.spec.seed for r in results) == [1, 2, 3] and all(r.judgements for r in results)
    assert (folder / "results.parquet").exists() and RunFolder(folder).manifest()["spec"]["strategies"] == [
        "humble-equal"
    ]
    pack = (fresh / "pack.md").read_text()
    assert [line for line in pack.splitlines() if line.startswith("## ")] == ["## Seed 1", "## Seed 2", "## Seed 3"]
    assert '### seed 1: Humble equal meets Dana (Dana, the "your price is too high" haggler)' in pack
    assert pack.count("#### What Dana did not say") == 3 and pack.startswith("# humble-equal meets price-haggler")

    assert paired.exit_code == 0, paired.output
    (folder,) = (tmp_path / "paired").iterdir()
    assert "playing 4 episodes: humble-equal and eager-to-please x seeds 1..2" in paired.output.replace("\n", "")
    (page,) = (folder / "examples" / "contrast").glob("humble-equal-vs-eager-to-please-*.html")
    html = page.read_text()
    assert html.count('class="columns n2"') == 2 and html.count('<article class="dialogue"') == 4  # 2 pairs x 2
    assert f"pack: {page}" in paired.output.replace("\n", "")


def test_picking_again_removes_only_the_previous_picks_files_never_another_commands_pack(tmp_path):
    from sandbox.examples import write_fresh

    run = write_run(tmp_path / "run", [episode("eager-to-please", 1, scores={"discovery": 5}),
                                       episode("eager-to-please", 2, scores={"discovery": 2})])  # fmt: skip
    fresh = write_fresh(run)
    assert fresh[0] == run / "examples" / "fresh" / "pack.md"
    before = fresh[0].read_text()
    branch = run / "examples" / "branch.md"  # as sandbox branch wrote it (before its own folder)
    branch.write_text("the branch pack")
    stale = run / "examples" / "eager-to-please-lowest-old-episode.md"  # a pick by another column
    stale.write_text("stale")
    (run / "examples" / "pack.pdf").write_bytes(b"%PDF stale")  # an earlier pick's PDF, not asked for now
    out, picks = write_examples(run)
    assert not stale.exists() and not (out / "pack.pdf").exists()
    assert branch.read_text() == "the branch pack" and fresh[0].read_text() == before
    assert {p.name for p in out.glob("*-*.md")} == {f"eager-to-please-{p.rank}-{p.episode_id}.md" for p in picks}


def fresh_flags(api_base: str, runs_dir: Path) -> list[str]:
    return ["examples", "--rep", "humble-equal", "--prospect", "price-haggler", "--scenario", "saas-seats",
            "--model", "openai/gpt-4o-mini", "--api-base", api_base, "--no-cache", "--max-turns", "4",
            "--runs-dir", str(runs_dir)]  # fmt: skip


def test_fresh_examples_refuse_a_mistyped_by_before_playing(tmp_path, monkeypatch):
    from sandbox.cli import app

    monkeypatch.chdir(ROOT)
    with FakeProvider(deal_or_walk()) as provider:
        for extra in ([], ["--contrast", "eager-to-please"]):
            bad = runner.invoke(app, [*fresh_flags(provider.api_base, tmp_path / "runs"), "--by", "score_foo", *extra])
            assert bad.exit_code == 2, bad.output
            (line,) = bad.output.strip().splitlines()
            assert "--by 'score_foo' is not a column to rank by; choose one of: score_mean, score_discovery" in line
            assert "m_turns" in line and "m_status" not in line
        assert provider.served == 0 and not (tmp_path / "runs").exists()  # nothing played, no folder


def test_fresh_examples_resume_their_run_folder_without_playing_again(tmp_path, monkeypatch):
    from sandbox.cli import app

    monkeypatch.chdir(ROOT)
    with FakeProvider(deal_or_walk()) as provider:
        flags = fresh_flags(provider.api_base, tmp_path / "runs")
        first = runner.invoke(app, [*flags, "--count", "2"])
        assert first.exit_code == 0, first.output
        (folder,) = (tmp_path / "runs").iterdir()
        pack = folder / "examples" / "fresh" / "pack.md"
        played, before = provider.served, pack.read_text()
        pack.unlink()
        again = runner.invoke(app, [*flags, "--count", "2", "--resume", str(folder)])
        assert again.exit_code == 0, again.output
        assert provider.served == played and played > 0  # both episodes were finished: nothing asked again
        assert pack.read_text() == before and f"run folder: {folder}" in again.output.replace("\n", "")
        assert [p.name for p in (tmp_path / "runs").iterdir()] == [folder.name]  # no second run folder
        other = runner.invoke(app, [*flags, "--count", "3", "--resume", str(folder), "--no-preflight"])
        assert other.exit_code == 2 and provider.served == played
        *_, error = other.output.strip().splitlines()  # after the "playing" line: the runner's one-line refusal
        assert error.startswith(f"error: {folder}: started from a different spec") and error.endswith("new run instead")
    stray = runner.invoke(app, ["examples", str(folder), "--resume", str(folder)])
    assert stray.exit_code == 2 and "--resume continues fresh examples" in stray.output
