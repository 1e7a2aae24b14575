"""Trainers' packs: contrast picks (pure), verified-only scores, marks and highlights, the self-contained
page, what headless Chromium shows of it, and its PDF."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sandbox.examples import ExamplesError, pick_contrasts, write_contrast
from sandbox.judge import load_rubric
from sandbox.packs import (
    HELPS_AT,
    HURTS_AT,
    Pack,
    Panel,
    PdfError,
    dialogue_view,
    effect_of,
    render_html,
    render_markdown,
    segments,
    shared_turns,
    verified_frame,
    verified_rows,
    write_pack,
)
from sandbox.schemas import CriterionScore, Evidence, Judgement, Turn
from tests.browser import CHROMIUM, file_page
from tests.handmade import OPENING, episode, write_run

runner = CliRunner()


def cells(rows: list[tuple[str, str, int, str, float | None]]) -> pd.DataFrame:
    """(episode id, strategy, seed, status, score_mean): one prospect, scenario, opener and model pair."""
    return pd.DataFrame(
        [
            {"episode_id": e, "strategy": s, "prospect": "p", "scenario": "c", "seed": seed, "opener": "rep",
             "rep_model": "m", "prospect_model": "m", "status": st, "judge_model": "j", "score_mean": v}
            for e, s, seed, st, v in rows
        ]
    )  # fmt: skip


def test_contrast_pairs_are_matched_cells_most_different_first_ties_by_id():
    frame = cells(
        [
            ("a1", "alpha", 1, "ok", 5.0), ("b1", "beta", 1, "ok", 1.0),  # gap 4
            ("a2", "alpha", 2, "ok", 2.0), ("b2", "beta", 2, "ok", 4.0),  # gap 2 (beta better)
            ("a3", "alpha", 3, "ok", 3.0), ("b3", "beta", 3, "ok", 1.0),  # gap 2: tie with seed 2
            ("a4", "alpha", 4, "failed", 5.0), ("b4", "beta", 4, "ok", 1.0),  # failed: never a pair
            ("a5", "alpha", 5, "ok", math.nan), ("b5", "beta", 5, "ok", 1.0),  # unjudged: never a pair
            ("x6", "alpha", 6, "ok", 5.0),  # no beta episode in its cell
        ]
    )  # fmt: skip
    pairs = pick_contrasts(frame, "alpha", "beta", count=3)
    assert [(p.a_episode_id, p.b_episode_id) for p in pairs] == [("a1", "b1"), ("a2", "b2"), ("a3", "b3")]
    assert [p.difference for p in pairs] == [4.0, -2.0, 2.0]
    assert pairs[0].match == {"prospect": "p", "scenario": "c", "seed": 1, "opener": "rep", "rep_model": "m",
                              "prospect_model": "m"}  # fmt: skip
    assert "alpha 5.00 vs beta 1.00 on score_mean (difference +4.00)" in pairs[0].why
    assert [p.a_episode_id for p in pick_contrasts(frame, "alpha", "beta", count=1)] == ["a1"]
    swapped = pick_contrasts(frame.sample(frac=1, random_state=3), "beta", "alpha", count=3)  # row order: no matter
    assert [(p.a_episode_id, p.b_episode_id) for p in swapped] == [("b1", "a1"), ("b2", "a2"), ("b3", "a3")]


def test_contrast_requests_the_run_cannot_answer_are_one_line_errors():
    frame = cells([("a1", "alpha", 1, "ok", 3.0), ("b2", "beta", 2, "ok", 3.0)])
    with pytest.raises(ExamplesError, match="two different strategies"):
        pick_contrasts(frame, "alpha", "alpha")
    with pytest.raises(ExamplesError, match="no finished episode of 'gamma'; the run has: alpha, beta"):
        pick_contrasts(frame, "alpha", "gamma")
    with pytest.raises(ExamplesError, match="unknown column 'score_nope'"):
        pick_contrasts(frame, "alpha", "beta", by="score_nope")
    with pytest.raises(ExamplesError, match="no matched pair of alpha and beta has a value for 'score_mean'"):
        pick_contrasts(frame, "alpha", "beta")  # different seeds: nothing is matched


def unsupported(result, criterion: str):
    """The same result with ``criterion``'s quote unverified: its score stands in the record, unsupported."""
    (judgement,) = result.judgements
    scores = [
        s.model_copy(update={"supported": False, "evidence": [e.model_copy(update={"verified": False})
                                                               for e in s.evidence]})
        if s.criterion == criterion else s
        for s in judgement.scores
    ]  # fmt: skip
    return result.model_copy(update={"judgements": [judgement.model_copy(update={"scores": scores})]})


def test_only_supported_scores_count_in_the_frame_the_view_and_the_marks():
    result = unsupported(episode("eager-to-please", scores={"discovery": 5, "holds-boundaries": 1}), "discovery")
    (row,) = verified_rows(result)
    assert row["score_discovery"] is None and row["score_holds-boundaries"] == 1 and row["score_mean"] == 1
    view = dialogue_view(result, load_rubric(), "x")
    assert view.score_mean == 1.0
    lines = {line.criterion: line for line in view.scores}
    assert lines["discovery"].score is None and lines["discovery"].note == "not counted: no verified evidence"
    assert [m.criterion for m in view.turns[0].marks] == ["holds-boundaries"]  # the unverified quote marks nothing
    assert "Not counted (no verified evidence or no score): Discovery." in view.debrief


def test_a_pair_is_picked_on_verified_scores_only(tmp_path):
    """alpha's high score is unsupported: by the table it would be the widest gap, verified it is not."""
    planted = unsupported(episode("assertive-consultant", 1, scores={"discovery": 5}), "discovery")
    results = [planted, episode("eager-to-please", 1, scores={"discovery": 1}),
               episode("assertive-consultant", 2, scores={"discovery": 4}), episode("eager-to-please", 2,
               scores={"discovery": 3})]  # fmt: skip
    run = write_run(tmp_path / "run", results)
    pairs = pick_contrasts(verified_frame(run), "assertive-consultant", "eager-to-please")
    assert [(p.match["seed"], p.a_value, p.b_value) for p in pairs] == [(2, 4.0, 3.0)]
    from sandbox.table import results_frame

    unverified = pick_contrasts(results_frame(run), "assertive-consultant", "eager-to-please")
    assert unverified[0].match["seed"] == 1 and unverified[0].a_value == 5.0  # what the table alone would pick


def test_marks_help_hurt_or_mix_by_the_rubric_scale():
    assert [effect_of(s) for s in range(1, 6)] == ["hurts", "hurts", "mixed", "helps", "helps"]
    assert (HURTS_AT, HELPS_AT) == (2, 4)


def test_the_debrief_calls_a_mean_exactly_halfway_mixed_and_past_halfway_helps_or_hurts():
    from sandbox.packs import ScoreLine, debrief

    def word(mean: float) -> str:
        line = ScoreLine(criterion="discovery", name="Discovery", score=mean, judges=2)
        return debrief([line], None, "x").split("Discovery ")[1].split(")")[0]

    assert [word(m) for m in (2.4, 2.5, 3.0, 3.5, 3.6)] == [
        "2.4 (hurts", "2.5 (mixed", "3.0 (mixed", "3.5 (mixed", "3.6 (helps"
    ]  # fmt: skip


def test_quotes_are_found_whitespace_insensitively_and_overlaps_merge():
    from sandbox.packs import Mark

    def mark(quote: str) -> Mark:
        return Mark(criterion="c", name="C", judge="j", score=5, effect="helps", quote=quote, reason="r")

    text = "What is it\n costing you today? And who else decides?"
    pieces = segments(text, [mark("is it costing you"), mark("costing you today?"), mark("not in it")])
    assert [(s.text, s.marked) for s in pieces] == [
        ("What ", False), ("is it\n costing you today?", True), (" And who else decides?", False)
    ]  # fmt: skip
    assert "".join(s.text for s in pieces) == text


def planted_result(message: str, quote: str, score: int = 5):
    """A handmade episode whose rep opening is ``message``, judged on discovery with ``quote`` verified."""
    base = episode("assertive-consultant", scores={"discovery": score})
    transcript = base.transcript
    turns = [transcript.turns[0].model_copy(update={"message": message}), *transcript.turns[1:]]
    evidence = [Evidence(turn=0, quote=quote, verified=True)]
    score_line = CriterionScore(criterion="discovery", score=score, rationale="Asks <why> & how.", evidence=evidence,
                                supported=True)  # fmt: skip
    judgement = Judgement(episode_id=base.episode_id, judge_model="openai/judge", rubric_id="r", scores=[score_line])
    return base.model_copy(
        update={"transcript": transcript.model_copy(update={"turns": turns}), "judgements": [judgement]}
    )


def test_the_page_is_self_contained_escapes_the_dialogue_and_highlights_the_quote():
    message = 'Before price: <script>alert("x")</script> what does a late close cost you & your team?'
    result = planted_result(message, "what does a late close cost you")
    view = dialogue_view(result, load_rubric(), "ours")
    page = render_html(Pack(title="T <b>", panels=[Panel(title="P", columns=[view])]))
    assert "<script" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert re.search(r'<mark title="Discovery 5 \(helps, openai/judge\)">what does a late close cost you</mark>', page)
    assert "</mark> &amp; your team?" in page and "Asks &lt;why&gt; &amp; how." in page and "T &lt;b&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)  # nothing fetched or linked
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "@media print" in page and "break-before: page" in page
    assert "What Dana did not say" in page and "The rep's floor was 19,200 USD." in page  # the brief, revealed
    source = "“From server to assertive consultant (podcast conversation)” (Mia and Mars (podcast hosts))"
    assert f"{source}: Discovery 5.0 (helps)" in page  # the debrief names each criterion's seed document
    md = render_markdown(Pack(title="T", panels=[Panel(title="P", columns=[view])]))
    assert "**what does a late close cost you**" in md and "- helps: Discovery 5 (openai/judge)" in md


def test_a_branch_panel_shows_the_shared_beginning_once_then_the_continuations():
    """The lead's `sandbox branch` pack: the prefix once, full width, then N columns from the turn after it."""
    rubric = load_rubric()
    results = [
        episode(s, 1, scores={"discovery": 4}) for s in ("assertive-consultant", "humble-equal", "eager-to-please")
    ]
    panel = Panel(
        title="From turn 1",
        shared=shared_turns(results[0], rubric, upto=1),
        columns=[dialogue_view(r, rubric, r.spec.strategy, from_turn=1) for r in results],
    )
    assert [t.index for t in panel.shared] == [0] and not panel.shared[0].marks
    assert all([t.index for t in c.turns] == [1] for c in panel.columns)
    md = render_markdown(Pack(title="Branch", panels=[panel]))
    page = render_html(Pack(title="Branch", panels=[panel]))
    assert md.count(f"> {OPENING}") == 1 and "then 3 continuations" in md and md.count("The dialogue from turn 1") == 3
    assert page.count('data-turn="0"') == 1 and page.count('data-turn="1"') == 3  # turn 0 shared, turn 1 each
    assert 'class="columns n3"' in page and page.count('<article class="dialogue"') == 3


def contrast_run(folder: Path) -> Path:
    results = []
    for seed in (1, 2):
        results.append(episode("assertive-consultant", seed, scores={"discovery": 5, "holds-boundaries": 4}))
        results.append(
            episode("eager-to-please", seed, status="walk_away", scores={"discovery": 1, "holds-boundaries": 2})
        )
    return write_run(folder, results)


def test_chromium_shows_the_two_dialogues_of_a_pair_side_by_side(tmp_path):
    run = contrast_run(tmp_path / "run")
    written, pairs = write_contrast(run, "assertive-consultant", "eager-to-please", count=1)
    html = next(p for p in written if p.suffix == ".html")
    with file_page(html) as page:
        panels = page.locator("section.panel")
        assert panels.count() == 1
        columns = panels.first.locator("article.dialogue")
        assert columns.count() == 2
        left, right = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
        assert abs(left["y"] - right["y"]) < 1 and left["x"] + left["width"] <= right["x"]  # one row, two columns
        assert "Assertive consultant" in columns.nth(0).inner_text() and "walk_away" in columns.nth(1).inner_text()
        marks = columns.nth(1).locator("mark")
        assert marks.count() == 1 and marks.first.inner_text() == OPENING  # the verified quote, highlighted
        assert "hurts Discovery 1" in columns.nth(1).inner_text()
        assert page.evaluate("getComputedStyle(document.querySelector('mark')).backgroundColor") == "rgb(253, 230, 138)"


def pdf_pages(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data))


def test_pdf_is_printed_by_chromium_a_page_break_between_pairs(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (scripts/setup.sh test installs it)")
    from sandbox.cli import app

    run = contrast_run(tmp_path / "run")
    one = runner.invoke(app, ["examples", str(run), "--contrast", "assertive-consultant", "eager-to-please",
                              "--count", "1", "--pdf", "--out", str(tmp_path / "one")])  # fmt: skip
    assert one.exit_code == 0, one.output
    two = runner.invoke(app, ["examples", str(run), "--contrast", "assertive-consultant", "eager-to-please",
                              "--pdf", "--out", str(tmp_path / "two")])  # fmt: skip
    assert two.exit_code == 0, two.output
    (first,), (second,) = (list((tmp_path / d).glob("*.pdf")) for d in ("one", "two"))
    assert f"pack: {first}" in one.output.replace("\n", "")
    assert pdf_pages(first) >= 1 and pdf_pages(second) >= 2 * pdf_pages(first) - 1  # pair 2 starts a page


def test_without_chromium_the_pdf_is_a_one_line_error_and_the_rest_is_written(tmp_path, monkeypatch):
    from sandbox import packs
    from sandbox.cli import app

    monkeypatch.setattr(packs, "chromium", lambda: None)
    view = dialogue_view(episode("assertive-consultant", scores={"discovery": 4}), None, "x")
    with pytest.raises(PdfError, match="no Chromium found") as caught:
        write_pack(Pack(title="T", panels=[Panel(title="P", columns=[view])]), tmp_path / "out", "pack", pdf=True)
    assert [p.name for p in caught.value.written] == ["pack.md", "pack.html"] and all(
        p.exists() for p in caught.value.written
    )
    run = contrast_run(tmp_path / "run")
    result = runner.invoke(
        app, ["examples", str(run), "--contrast", "assertive-consultant", "eager-to-please", "--pdf"]
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no Chromium found" in errors[0]
    assert list((run / "examples" / "contrast").glob("*.html")) and not list(
        (run / "examples" / "contrast").glob("*.pdf")
    )


def test_turn_notes_and_a_failed_dialogue_render(tmp_path):
    failed = episode("eager-to-please", 1, status="failed", error="provider down")
    view = dialogue_view(failed, None, "seed 1 (failed)")
    assert view.outcome.startswith("the conversation was cut short (provider down)")
    noted = failed.transcript.model_copy(
        update={"turns": [Turn(index=0, speaker="rep", message="Hi.", action=failed.transcript.turns[0].action,
                               notes=["an invalid accept"])]}
    )  # fmt: skip
    page = render_html(Pack(title="T", panels=[Panel(title="P", columns=[dialogue_view(
        failed.model_copy(update={"transcript": noted}), None, "x")])]))  # fmt: skip
    assert "Note: an invalid accept" in page
