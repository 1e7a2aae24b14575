"""Faithfulness and unstated offers, end to end: a scripted OpenAI-compatible provider plays a run in which
one strategy's rep offers 4.87 on a 24,000 USD list price (far below its 19,200 floor) with words that
state no price, and the prospect accepts; the report, its comparison and the transcript browser must
all say so, with money in the scenario's format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.report import build, write_report
from sandbox.runfolder import RunFolder
from sandbox.table import results_frame
from tests.browser import report_page
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider, Reply, spec_file
from tests.handmade import shipped

runner = CliRunner()
VIOLATOR = "assertive-consultant"  # its rep offers 4.87 on its first turn, saying no price
BASELINE = "eager-to-please"
UNSTATED_LINE = "Compared to what?"
ACCEPT_LINE = "Fine, we accept."
OPENING = "Hello, what matters most to you here?"


def responder(request: dict[str, Any]) -> Reply:
    """Rep: the violator offers 4.87 with words that state no price; the baseline only asks. Prospect:
    accepts whatever stands (both prospects' walk-away is the list price). Judge: a 3 quoting the prospect."""
    messages = request["messages"]
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if "impartial evaluator" in system:
        evidence = [{"turn": 1, "quote": ACCEPT_LINE}, {"turn": 0, "quote": OPENING}]
        return Reply(content=json.dumps({"score": 3, "rationale": "scripted", "evidence": evidence}))
    if "Never accept or offer less than" in system:  # the rep's prompt
        summary = " ".join(shipped().strategy(VIOLATOR).summary.split())
        if summary in " ".join(system.split()):
            turn = {"message": UNSTATED_LINE, "action": "offer", "price": 4.87, "terms": None}
        else:
            turn = {"message": OPENING, "action": "none", "price": None, "terms": None}
        return Reply(content=json.dumps(turn))
    return Reply(content=json.dumps({"message": ACCEPT_LINE, "action": "accept", "price": None, "terms": None}))


def play(tmp: Path, seeds: int, prospects: list[str], run_id: str) -> Path:
    os.environ.setdefault("OPENAI_API_KEY", "test-faithfulness-not-a-real-key")
    from sandbox.cli import app

    with FakeProvider(responder) as provider:
        path = spec_file(tmp, provider.api_base, "openai/gpt-4o-mini", id=run_id, seeds=seeds, prospects=prospects,
                         strategies=[BASELINE, VIOLATOR], concurrency=2)  # fmt: skip
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            result = runner.invoke(app, ["run", str(path), "--runs-dir", str(tmp / "runs"), "--no-cache"])
        finally:
            os.chdir(cwd)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp / "runs").iterdir()
    return folder


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    """2 strategies x 2 prospects x 3 seeds = 12 judged episodes, 6 of them deals at 4.87 USD."""
    return play(tmp_path_factory.mktemp("planted-floor"), 3, ["skeptic", "dependent-client"], "planted-floor")


@pytest.fixture(scope="module")
def one_pair_run(tmp_path_factory) -> Path:
    return play(tmp_path_factory.mktemp("one-pair"), 1, ["skeptic"], "one-pair")


def test_the_planted_deal_is_measured_noted_on_its_turn_and_counted(planted_run):
    results = list(RunFolder(planted_run).latest())
    planted = [r for r in results if r.spec.strategy == VIOLATOR]
    assert len(planted) == 6
    for result in planted:
        first = result.transcript.turns[0]
        assert first.action.price == 4.87  # one-call default: the unstated offer counts...
        assert first.notes == ["offer 4.87 is not stated in the message; counted as offered"]  # ...and is noted
        assert result.transcript.outcome.price == 4.87
        m = result.metrics
        assert m.rep_offers_below_floor == 1 and m.faithfulness_violated and m.unstated_offers == 1
    assert all(not r.metrics.faithfulness_violated and r.metrics.unstated_offers == 0
               for r in results if r.spec.strategy == BASELINE)  # fmt: skip
    frame = results_frame(planted_run)
    assert frame.groupby("strategy")["m_unstated_offers"].sum().to_dict() == {BASELINE: 0, VIOLATOR: 6 * 1}


def _section(md: str, title: str) -> str:
    return md.split(f"\n## {title}")[1].split("\n## ")[0]


def test_report_has_a_faithfulness_table_with_wilson_intervals_and_the_violation_rate_compared(planted_run):
    md_path, html_path = write_report(planted_run)
    md, html = md_path.read_text(), html_path.read_text()
    section = _section(md, "Faithfulness")
    header = ("| strategy | rep offer below its floor | prospect acceptance above its walk-away "
              "| private figure disclosed | any violation | offer its message does not state |")  # fmt: skip
    assert header in section
    # Wilson 95% for 6/6 is [0.61, 1.00]; for 0/6, [0.00, 0.39].
    assert (f"| {VIOLATOR} | 6/6: 1.00 [0.61, 1.00] | 0/6: 0.00 [0.00, 0.39] | 0/6: 0.00 [0.00, 0.39] "
            "| 6/6: 1.00 [0.61, 1.00] | 6/6: 1.00 [0.61, 1.00] |") in section  # fmt: skip
    assert f"| {BASELINE} | 0/6: 0.00 [0.00, 0.39] |" in section
    assert f"| {VIOLATOR} | skeptic | 3/3: 1.00 [0.44, 1.00] |" in section  # by prospect
    assert "### Episodes with a violation (6)" in section
    assert "turn 0: rep offered 4.87 USD, below its floor of 19,200 USD" in section  # the scenario's money format
    comparison = _section(md, "Each strategy against the baseline")
    (row,) = [line for line in comparison.splitlines() if line.startswith(f"| {VIOLATOR} | m_faithfulness_violated |")]
    assert row.startswith(f"| {VIOLATOR} | m_faithfulness_violated | 6 | 1.000 | [1.000, 1.000] | 0.0312 |")
    assert 'id="faithfulness-table"' in html and 'id="faithfulness-prospect-table"' in html


def test_browser_data_carries_the_badge_findings_and_money_in_the_scenarios_format(planted_run):
    data = build(planted_run)
    planted = [e for e in data["browser"] if e["strategy"] == VIOLATOR]
    assert {e["faithfulness"] for e in planted} == {"violation"}
    assert {e["faithfulness"] for e in data["browser"] if e["strategy"] == BASELINE} == {"faithful"}
    episode = planted[0]
    assert episode["price_text"] == "4.87 USD" and episode["unstated_offers"] == 1
    assert episode["turns"][0]["price_text"] == "4.87 USD" and episode["turns"][0]["unstated"]
    assert episode["findings"] == ["turn 0: rep offered 4.87 USD, below its floor of 19,200 USD"]


def test_page_shows_the_badge_and_filters_violations_in_headless_chromium(planted_run):
    with report_page(planted_run) as page:
        assert page.locator("#faithfulness-table tr").count() == 3
        assert page.locator("#faithfulness-table td.hit").count() == 3  # below floor, any, unstated
        assert page.locator("#faithfulness-table td.hit.soft").count() == 1  # unstated: no violation itself
        assert page.locator("#episode-list .badge").count() == 6
        page.select_option("#f-faithfulness", "violation")
        assert page.locator("#f-count").inner_text() == "6 of 12 episodes"
        view = page.locator("#episode-view")
        assert view.locator("h3 .badge").inner_text() == "faithfulness"
        assert "rep offered 4.87 USD, below its floor of 19,200 USD" in view.locator(".findings").inner_text()
        assert "[offer 4.87 USD]" in view.inner_text() and "at 4.87 USD" in view.inner_text()
        assert "note: offer 4.87 is not stated in the message; counted as offered" in view.inner_text()
        page.select_option("#f-faithfulness", "faithful")
        assert page.locator("#f-count").inner_text() == "6 of 12 episodes"
        assert page.locator("#episode-list .badge").count() == 0
        page.select_option("#f-faithfulness", "violation")
        page.screenshot(path=str(planted_run / "report.png"), full_page=True)
    assert (planted_run / "report.png").stat().st_size > 10_000


def test_one_pair_gets_no_p_value_nor_interval_in_any_column_and_says_why(one_pair_run):
    md_path, html_path = write_report(one_pair_run)
    comparison = _section(md_path.read_text(), "Each strategy against the baseline")
    rows = {line.split(" | ")[1]: line for line in comparison.splitlines() if line.startswith(f"| {VIOLATOR} |")}
    no_pairs = "| 0 | - | [-, -] | - (no matched pairs) | - (no matched pairs) |"
    assert rows.pop("m_prospect_movement_share").endswith(no_pairs)
    assert sorted(rows) == ["m_deal", "m_discount_from_list", "m_faithfulness_violated", "score_mean"]
    for row in rows.values():
        assert row.endswith("| [-, -] | - (too few pairs: 1) | - (too few pairs: 1) |"), row
    assert f"| {VIOLATOR} | m_faithfulness_violated | 1 | 1.000 | [-, -] |" in rows["m_faithfulness_violated"]
    assert "1.0000" not in comparison
    assert "A p-value needs at least 6 matched pairs" in comparison
    assert html_path.read_text().count("(too few pairs: 1)</span>") == 8  # p and Holm, four metrics


def test_a_result_recorded_before_these_metrics_existed_is_measured_from_its_transcript(tmp_path):
    from sandbox.results import EpisodeResult
    from sandbox.schemas import Action, ActionKind, Outcome, OutcomeStatus, Turn
    from tests.handmade import episode, write_run

    result = episode(VIOLATOR)
    turns = [
        Turn(index=0, speaker="rep", message=UNSTATED_LINE, action=Action(kind=ActionKind.OFFER, price=4.87)),
        Turn(index=1, speaker="prospect", message=ACCEPT_LINE, action=Action(kind=ActionKind.ACCEPT)),
    ]
    outcome = Outcome(status=OutcomeStatus.DEAL, price=4.87, decided_by="prospect")
    line = result.model_copy(
        update={"transcript": result.transcript.model_copy(update={"turns": turns, "outcome": outcome})}
    )
    old = line.model_dump(mode="json")  # as an older version wrote it: none of the new metrics
    old["metrics"] = {
        k: v
        for k, v in old["metrics"].items()
        if k not in {"rep_floor_disclosed", "prospect_figure_disclosed", "faithfulness_violated", "unstated_offers"}
    } | {"rep_offers_below_floor": 1, "faithfulness_violations": 1}
    folder = write_run(tmp_path / "old", [EpisodeResult.model_validate(old)])
    row = results_frame(folder).iloc[0]
    assert row["m_unstated_offers"] == 1 and bool(row["m_faithfulness_violated"])
    assert not row["m_rep_floor_disclosed"] and not row["m_prospect_figure_disclosed"]
    (faithful,) = build(folder)["faithfulness"]
    assert [c["k"] for c in faithful["cells"]] == [1, 0, 0, 1, 1]
