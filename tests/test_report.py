"""The run report: markdown and self-contained HTML, checked in headless Chromium."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from sandbox.report import build, write_report
from tests.browser import report_page
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict, spec_file
from tests.handmade import episode, write_run

runner = CliRunner()
LONG_REASON = (
    "ModelCallError: openai/prospect failed after 4 attempt(s): RateLimitError: the provider refused the request: "
    "tokens per minute exceeded for this organisation; retry after the window resets (limit 30000)"
)
JUDGE_REASON = "judge returned no usable verdict twice: evidence quote not found in turn 0 | nor in any other turn"


def _app():  # noqa: ANN202
    from sandbox.cli import app  # imported here: the hand-made tests below need no CLI

    return app


@pytest.fixture(scope="module")
def handmade_run(tmp_path_factory):
    """Written by hand: a baseline with 7 seeds, one strategy matching it on 1 seed, one matching it on none
    (another prospect), one that never made a deal; two failed episodes with a long reason; three criterion
    verdicts missing."""
    results = [episode("eager-to-please", seed, scores={"discovery": 3, "rapport": 3}) for seed in range(1, 8)]
    results.append(episode("assertive-consultant", 1, scores={"discovery": 4, "rapport": None},
                           judge_errors={"rapport": JUDGE_REASON}))  # fmt: skip
    results += [episode("humble-equal", seed, prospect="skeptic", scores={"discovery": 5, "rapport": 5})
                for seed in (1, 2)]  # fmt: skip
    results += [episode("assertive-consultant", seed, status="failed", error=LONG_REASON) for seed in (2, 3)]
    results.append(episode("convincer", 1, status="walk_away", scores={"discovery": 2, "rapport": 2}))  # no deal
    results.append(episode("eager-to-please", 1, prospect="skeptic", scores={"discovery": None, "rapport": None},
                           judge_errors={"discovery": JUDGE_REASON, "rapport": "timeout"}))  # fmt: skip
    return write_run(tmp_path_factory.mktemp("handmade") / "run", results, baseline="eager-to-please")


def test_failure_reasons_are_shown_whole_and_failed_criteria_counted_with_their_reasons(handmade_run):
    data = build(handmade_run)
    assert data["plots"]["deal_discount"].startswith("data:image/png;base64,")  # a strategy with no deal too
    assert data["failures"] == {LONG_REASON: 2}
    assert data["judge_failures_total"] == 3 and data["judge_failed_episodes"] == 2
    md_path, html_path = write_report(handmade_run)
    md, html = md_path.read_text(), html_path.read_text()
    assert f"- {LONG_REASON}: 2" in md
    assert f"<li>{LONG_REASON}: 2</li>" in html
    assert "3 criterion verdicts failed, in 2 episodes" in md and "3 criterion verdicts failed, in 2 episodes" in html
    escaped = JUDGE_REASON.replace("|", "\\|")
    assert f"| openai/judge | rapport | {escaped} | 1 |" in md
    assert f"| openai/judge | discovery | {escaped} | 1 |" in md and "| openai/judge | rapport | timeout | 1 |" in md
    assert f'<td>rapport</td><td style="text-align: left">{JUDGE_REASON}</td><td>1</td>' in html


def test_comparisons_without_enough_pairs_show_no_p_value_and_say_why(handmade_run):
    md_path, html_path = write_report(handmade_run)
    md, html = md_path.read_text(), html_path.read_text()
    section = md.split("## Each strategy against the baseline")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| humble-equal | score_mean |")]
    assert rows == ["| humble-equal | score_mean | 0 | - | [-, -] | - (no matched pairs) | - (no matched pairs) |"]
    rows = [line for line in section.splitlines() if line.startswith("| assertive-consultant | score_mean |")]
    assert len(rows) == 1 and rows[0].endswith("| - (too few pairs: 1) | - (too few pairs: 1) |")
    assert "1.0000" not in section
    assert "A p-value needs at least 6 matched pairs" in md and "A p-value needs at least 6 matched pairs" in html
    assert "(too few pairs: 1)</span>" in html and "(no matched pairs)</span>" in html


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A small finished run against the fake provider: 2 strategies x 2 prospects x 3 seeds, judged."""
    tmp = tmp_path_factory.mktemp("report")
    os.environ.setdefault("OPENAI_API_KEY", "sk-test-report-not-a-real-key")
    replies = [Reply(content=json.dumps(accept_and_verdict(2 + (i % 3)))) for i in range(400)]
    with FakeProvider(replies) as provider:
        path = spec_file(tmp, provider.api_base, "openai/gpt-4o-mini", id="report-test", seeds=3, concurrency=1)
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            result = runner.invoke(_app(), ["run", str(path), "--runs-dir", str(tmp / "runs"), "--no-cache"])
        finally:
            os.chdir(cwd)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp / "runs").iterdir()
    return folder


def test_report_holds_the_comparison_and_the_warnings(run_folder):
    data = build(run_folder)
    assert data["episodes_total"] == 12 and data["baseline"] == "eager-to-please"
    assert {r["metric"] for r in data["comparisons"]} >= {"score_mean", "m_deal"}
    assert data["self_preference"]  # the judge model also played both sides
    assert data["plots"]["forest"].startswith("data:image/png;base64,")
    assert any(e["evidence"] for e in data["browser"])
    result = runner.invoke(_app(), ["report", str(run_folder)])
    assert result.exit_code == 0, result.output
    md = (run_folder / "report.md").read_text()
    assert "| assertive-consultant | score_mean | 6 |" in md and "self-preference" in md
    html = (run_folder / "report.html").read_text()
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html  # self-contained


def test_page_renders_and_filters_in_headless_chromium(run_folder):
    with report_page(run_folder) as page:
        assert page.locator("#comparison-table tr").count() >= 3
        assert page.evaluate("document.getElementById('forest-plot').naturalWidth") > 0
        assert page.locator("#episode-view mark").count() >= 1  # an evidence quote highlighted in its turn
        assert page.locator("#f-count").inner_text() == "12 of 12 episodes"
        page.select_option("#f-strategy", "assertive-consultant")
        assert page.locator("#f-count").inner_text() == "6 of 12 episodes"
        assert page.locator("#episode-list div").count() == 6
        page.locator("#cells-table a.cell").first.click()
        assert page.locator("#f-count").inner_text() == "3 of 12 episodes"
        page.screenshot(path=str(run_folder / "report.png"), full_page=True)
    assert (run_folder / "report.png").stat().st_size > 10_000


def test_view_serves_the_report_on_loopback(run_folder):
    import subprocess
    import sys
    import urllib.request

    command = [sys.executable, "-c", "from sandbox.cli import app; app()", "view", str(run_folder)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line[line.index("http://") :].split()[0]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"transcript" in response.read().lower()
    finally:
        process.terminate()
        process.wait(10)
