"""``sandbox practice`` in a pseudo-terminal, as a person uses it: type, read the screen.

The agent and the judge are the fake provider (scripted by what each request is, see
``tests/test_practice.py``); the command runs as its own process under pexpect.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect

from tests.fake_provider import FakeProvider
from tests.test_practice import HINT_LINE, practice_responder

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
TIMEOUT = 60  # a bound on a hung process, not a timing


def practice(api_base: str, runs: Path, *extra: str) -> pexpect.spawn:
    sandbox = str(Path(sys.executable).with_name("sandbox"))
    args = ["practice", "--model", "openai/gpt-4o-mini", "--api-base", api_base, "--runs-dir", str(runs), *extra]
    env = os.environ | {"COLUMNS": "160", "LINES": "50", "NO_COLOR": "1", "TERM": "xterm"}
    env.pop("OPENAI_API_KEY", None)
    return pexpect.spawn(sandbox, args, cwd=str(ROOT), env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 160))


class Screen:
    """What the terminal has shown so far, ANSI codes removed."""

    def __init__(self, child: pexpect.spawn):
        self.child = child
        self.text = ""

    def type(self, line: str, until: str = "you> ") -> str:
        """Type a line and return what the screen showed in answer, up to the next prompt."""
        self.child.sendline(line)
        self.child.expect_exact(until)
        shown = ANSI.sub("", self.child.before or "")
        self.text += shown + until
        return shown


def test_a_terminal_session_from_first_line_to_saved_scorecard(tmp_path):
    with FakeProvider(practice_responder()) as provider:
        child = practice(provider.api_base, tmp_path / "runs")
        screen = Screen(child)
        child.expect_exact("you> ")
        intro = ANSI.sub("", child.before)
        assert "you are Jordan (rep)" in intro and "Your floor (never offer or accept less): 19,200 USD." in intro

        hint = screen.type("/hint")
        assert "hint (suggestion, not sent) - Assertive consultant" in hint and HINT_LINE in hint
        assert "error: /offer needs a price" in screen.type("/offer")
        assert "unknown command /nope" in screen.type("/nope")

        answer = screen.type("Hi Dana, what does the manual work cost you today?")
        assert "Dana: Your price is too high. I can pay 18,000." in answer and "[offer 18,000 USD]" in answer
        answer = screen.type("/offer 22000 How about that?")
        assert "note: offer 22000 is not stated in the message; counted as offered" in answer
        assert "Dana: Fine, 21,000 then, and that is final." in answer

        undone = screen.type("/undo")
        assert "undone: turns 2, 3 taken back." in undone
        assert "How about that?" not in undone.split("The dialogue now:")[1]  # the dialogue as it now stands
        assert "1 Dana: Your price is too high." in undone

        screen.type("/offer 21,600 I can do 21,600 for two years.")
        ended = screen.type("/accept", until="score? [Enter] /undo /restart> ")
        assert (
            "Jordan (you): Agreed: we have a deal at 21,000 USD." in ended
            and "dialogue over: deal at 21,000 USD" in ended
        )

        child.sendline("")
        child.expect(pexpect.EOF)
        card = ANSI.sub("", child.before)
        child.close()
    assert child.exitstatus == 0, card
    assert "Scorecard: PASS" in card and "mean 3.78 over 9 verified scores, pass mark 3.50" in card
    assert "brief kept: yes" in card
    assert "lowest-scored moment: turn 4 (holds-boundaries, 2.0)" in card and HINT_LINE in card
    saved = re.findall(r"saved: (\S+)", card)
    assert len(saved) == 2 and Path(saved[0]).is_dir() and Path(saved[1]).name == "transcript.json"
    assert Path(saved[0]).parent == tmp_path / "runs" / "practice"
