"""``sandbox practice --web`` in headless Chromium, as a person uses it: type, send, read the prospect's
answer, ask for a hint, undo, close the deal, end, read the scorecard. The server is the real command
in its own process, on 127.0.0.1, against the fake provider; the test starts and stops both."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.report import CHROMIUM_ARGS
from tests.browser import CHROMIUM
from tests.fake_provider import FakeProvider
from tests.test_practice import HINT_LINE, practice_responder

ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 30_000  # a bound on a hung page, not a timing
# Set to a folder (bench/screens) to keep the finished page's screenshot there.
SCREENS = os.environ.get("PRACTICE_SCREENS")


@contextlib.contextmanager
def practice_server(api_base: str, runs: Path) -> Iterator[str]:
    sandbox = str(Path(sys.executable).with_name("sandbox"))
    args = ["practice", "--web", "--port", "0", "--model", "openai/gpt-4o-mini", "--api-base", api_base]
    env = os.environ | {"COLUMNS": "200"}
    env.pop("OPENAI_API_KEY", None)
    process = subprocess.Popen(
        [sandbox, *args, "--runs-dir", str(runs)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"practice page: (http://127\.0\.0\.1:\d+/)", line)
        assert found, f"no address printed: {line!r}"
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_practice_page_from_first_message_to_scorecard(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/setup.sh test installs it (apt-get install chromium)")
        pytest.skip("chromium not installed (scripts/setup.sh test installs it)")
    from playwright.sync_api import expect, sync_playwright

    runs = tmp_path / "runs"
    with FakeProvider(practice_responder()) as provider, practice_server(provider.api_base, runs) as url:
        assert url.startswith("http://127.0.0.1:")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            expect(page.locator("#title")).to_contain_text("you are Jordan (rep)")
            expect(page.locator("#brief-lines")).to_contain_text("Your floor (never offer or accept less): 19,200 USD.")

            page.fill("#message", "Hi Dana, what does the manual work cost you today?")
            page.click("#send")
            dialogue = page.locator("#dialogue")
            expect(dialogue).to_contain_text("Your price is too high. I can pay 18,000.")
            expect(dialogue.locator(".turn")).to_have_count(2)

            page.click("#hint-button")
            expect(page.locator("#hint")).to_contain_text("Suggestion (not sent)")
            expect(page.locator("#hint")).to_contain_text(HINT_LINE)
            assert HINT_LINE not in dialogue.inner_text()  # shown, never sent

            page.fill("#message", "/offer")
            page.click("#send")
            expect(page.locator("#notices")).to_contain_text("/offer needs a price")

            page.fill("#price", "22000")
            page.click("#offer")
            expect(dialogue).to_contain_text("Fine, 21,000 then, and that is final.")
            expect(dialogue).to_contain_text("offer 22,000 USD")
            page.click("#undo")
            expect(dialogue.locator(".turn")).to_have_count(2)
            expect(page.locator("#notices")).to_contain_text("undone: turns 2, 3 taken back")

            page.fill("#message", "I can do 21,600 for a two-year commitment.")
            page.fill("#price", "21600")
            page.click("#offer")
            expect(dialogue.locator(".turn")).to_have_count(4)
            page.click("#accept")
            expect(page.locator("#ended")).to_contain_text("The dialogue is over: deal at 21,000 USD")

            page.click("#end")
            card = page.locator("#scorecard")
            expect(card).to_be_visible()
            expect(card.locator(".verdict")).to_have_text("PASS")
            expect(card).to_contain_text("mean 3.78 over 9 verified scores, pass mark 3.50")
            expect(card).to_contain_text("Lowest-scored moment: turn 4 (holds-boundaries, 2.0)")
            expect(card).to_contain_text(HINT_LINE)
            saved = re.findall(r"saved: (\S+)", card.inner_text())
            if SCREENS:
                Path(SCREENS).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(SCREENS) / "practice-web.png"), full_page=True)
            browser.close()
    assert len(saved) == 2 and Path(saved[0]).parent == runs / "practice" and Path(saved[1]).is_file()
