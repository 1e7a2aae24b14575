"""A scripted provider with planted strategy effects, for checking that the pipeline recovers them.

The rep's quality K is planted per strategy (recognised from the strategy text in the rep's own
system prompt) and carried in its message as a tag ``[qK]``. The prospect accepts with a planted
probability that depends on K; the (blind) judge reads the tag from the transcript and scores K-1,
K or K+1 with probabilities 1/4, 1/2, 1/4. So the true mean score of a strategy is K, and its true
deal rate is DEAL_P[K]. Randomness comes from a hash of the request (less the provider's port), so
every run is reproducible, and episodes of different seeds draw independently: one run over many seeds,
cut into blocks of seeds, is as good as as many separate runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from tests.fake_provider import Reply

QUALITY = {"eager-to-please": 2, "humble-equal": 3, "assertive-consultant": 4}
DEAL_P = {2: 0.3, 3: 0.5, 4: 0.8}
_TAG = re.compile(r"\[q(\d)\]")
# The judge's nonce hashes the episode id, which hashes the model's api_base, so the fake provider's
# random port: left in, it would redraw every planted score on each run and make the checks flaky.
_NONCE = re.compile(r"id=[0-9a-f]{12}")


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def responder(summaries: dict[str, str], salt: int = 0):  # noqa: ANN201
    """``summaries`` maps strategy id -> its summary text, as it appears in the rep's prompt."""

    def reply(request: dict[str, Any]) -> Reply:
        messages = request["messages"]
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        text = json.dumps(messages)
        if "impartial evaluator" in system:
            quality = int(_TAG.search(text).group(1))
            u = _uniform(salt, _NONCE.sub("id=", text), "judge")
            score = quality - 1 if u < 0.25 else quality + 1 if u >= 0.75 else quality
            quote = {"turn": 0, "quote": f"Let us talk. [q{quality}]"}
            return Reply(content=json.dumps({"score": score, "rationale": "planted", "evidence": [quote]}))
        for strategy, summary in summaries.items():
            if " ".join(summary.split()) in " ".join(system.split()):
                quality = QUALITY[strategy]
                # A mark of the episode (its prompt names the prospect; the seed is the episode's), so each
                # transcript, and so each judge draw, is its own, and the same in every run.
                mark = f"{_uniform(system, request.get('seed')):.6f}"[2:]
                turn = {"message": f"Let us talk. [q{quality}] #{mark}", "action": "none", "price": None, "terms": None}
                return Reply(content=json.dumps(turn))
        quality = int(_TAG.search(text).group(1))
        accept = _uniform(salt, system, request.get("seed"), "deal") < DEAL_P[quality]
        turn = {"message": "Fine, deal." if accept else "No thanks, goodbye.",
                "action": "accept" if accept else "walk_away", "price": None, "terms": None}  # fmt: skip
        return Reply(content=json.dumps(turn))

    return reply
