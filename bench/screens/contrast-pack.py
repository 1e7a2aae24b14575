"""The screen bench/screens/contrast-pack.png: a contrast pack of fresh examples played on the fake provider.

``.venv/bin/python bench/screens/contrast-pack.py`` runs ``sandbox examples --rep assertive-consultant
--prospect price-haggler --scenario saas-seats --contrast eager-to-please --count 2 --pdf`` against a
scripted OpenAI-compatible server on 127.0.0.1 (tests/fake_provider.py): every turn and every judge
verdict goes through the runner, the engine's rules and the judge's quote checks like any run. The
script below writes the lines: an assertive consultant who asks what the problem costs and holds its
price against an eager one who discounts at the first push; the judge scores each criterion by who
spoke and quotes that side's own sentence. Then it screenshots the pack's HTML with headless Chromium
and prints the PDF's page count. Nothing here is a model's judgement: it shows the pack, not selling.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from sandbox.cli import app  # noqa: E402
from sandbox.report import screenshot  # noqa: E402
from tests.fake_provider import FakeProvider, Reply  # noqa: E402

ASSERTIVE = [
    ("Thanks for making time, Dana. Before we talk price, what is the manual reconciliation costing your team "
     "each month?", None),
    ("Compared to what, though? If your analysts lose two days a month fixing errors, what does that cost you in "
     "overtime and late closes?", None),
    ("Then the real question is whether the tool removes that risk. I will not cut the price to win the deal, but "
     "for a two-year commitment I can do 21,600 USD a year with onboarding for your second team.", 21600),
]  # fmt: skip
EAGER = [
    ("Hi Dana! Thank you so much for considering us, we would love to have you. What can I do to make this work "
     "for you?", None),
    ("I completely understand, and I am so sorry about that. I can take 15 percent off right away, so "
     "20,400 USD.", 20400),
    ("Of course, I want you to be happy. How about 19,200 USD, and I will throw in premium support for free?", 19200),
]  # fmt: skip
PROSPECT_TO_ASSERTIVE = [
    ("Honestly, your price is too high. The other vendor is cheaper, so what discount can you give me?", None),
    ("About forty hours a month, and we missed a close in March. That one hurt with the auditors.", None),
    ("If onboarding for the second team is included, that works for us. We accept.", "accept"),
]
PROSPECT_TO_EAGER = [
    ("Honestly, your price is too high. The other vendor is cheaper, so what discount can you give me?", None),
    ("That was fast. If you dropped it that quickly, the price was padded. Go lower.", None),
    ("Fine, 19,200 USD it is. We accept.", "accept"),
]
# Scores per criterion, in rubric order: the assertive rep, then the eager one.
SCORES = {
    "assertive": [5, 5, 4, 5, 4, 4, 4, 3, 4, 4],
    "eager": [2, 1, 1, 1, 3, 1, 3, 2, 2, 3],
}
TURN = re.compile(r"^\[turn (\d+)\] (REP|PROSPECT): (.*)$", re.MULTILINE)


def turn_reply(line: tuple[str, Any]) -> Reply:
    message, act = line
    action = "offer" if isinstance(act, int) else (act or "none")
    price = act if isinstance(act, int) else None
    return Reply(content=json.dumps({"message": message, "action": action, "price": price, "terms": None}))


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.?!])\s+", text.strip())[0]


def verdict(user: str, criteria: list[str]) -> Reply:
    name = re.search(r"^Criterion: (.*)$", user, re.MULTILINE).group(1).strip()  # type: ignore[union-attr]
    position = criteria.index(name)
    turns = [(int(i), who, text) for i, who, text in TURN.findall(user)]
    style = "assertive" if ASSERTIVE[0][0] in user else "eager"
    about = re.search(r"^Whose turns it is about: (.*)$", user, re.MULTILINE).group(1)  # type: ignore[union-attr]
    side = "PROSPECT" if about.strip() == "the prospect" else "REP"
    own = [t for t in turns if t[1] == side]
    index, _, text = own[position % len(own)]
    score = SCORES[style][position]
    why = {"assertive": "Keeps to the problem and its cost before any price.",
           "eager": "Gives ground before learning anything about the problem."}[style]  # fmt: skip
    body = {"score": score, "rationale": why, "evidence": [{"turn": index, "quote": first_sentence(text)}]}
    return Reply(content=json.dumps(body))


def responder(criteria: list[str]):  # noqa: ANN201
    def respond(payload: dict[str, Any]) -> Reply:
        messages = payload.get("messages") or [{}]
        system = str(messages[0].get("content", ""))
        user = "\n".join(str(m.get("content", "")) for m in messages[1:])
        if "Criterion:" in user:
            return verdict(user, criteria)
        said = sum(1 for m in messages if m.get("role") == "assistant")
        if system.startswith("You are Jordan"):
            lines = ASSERTIVE if "pointed questions" in system else EAGER
        else:
            lines = PROSPECT_TO_ASSERTIVE if ASSERTIVE[0][0] in user else PROSPECT_TO_EAGER
        return turn_reply(lines[min(said, len(lines) - 1)])

    return respond


def pdf_pages(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-"), path
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data))


def main() -> None:
    from sandbox.judge import load_rubric

    criteria = [c.name for c in load_rubric().criteria]
    out = ROOT / "bench" / "screens" / "contrast-pack.png"
    with tempfile.TemporaryDirectory(prefix="contrast-pack-") as tmp, FakeProvider(responder(criteria)) as provider:
        args = ["examples", "--rep", "assertive-consultant", "--prospect", "price-haggler", "--scenario"]
        args += ["saas-seats", "--contrast", "eager-to-please", "--count", "2", "--model", "openai/fake-model"]
        args += ["--api-base", provider.api_base, "--no-cache", "--no-preflight", "--pdf", "--runs-dir", tmp]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        print(result.output)
        if result.exit_code != 0:
            raise SystemExit(result.exit_code)
        (html,) = Path(tmp).glob("*/examples/contrast/*.html")
        (pdf,) = Path(tmp).glob("*/examples/contrast/*.pdf")
        screenshot(html, out, width=1400)
        print(f"screen: {out}")
        print(f"pdf pages: {pdf_pages(pdf)} ({pdf.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
