"""How one agent turn is produced: a message plus a structured action.

Two policies serve the same interface. A strong model writes the message and the action
in one structured call. A tiny model (the embedded 135M) writes nonsense when its message
is forced inside JSON, but writes passable plain dialogue and extracts ``{action, price}``
from a message reliably under a grammar, so it gets two calls: text, then extraction.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from sandbox.amounts import UNSTATED, price_is_stated
from sandbox.amounts import prices_in as prices_in  # read here by the tests
from sandbox.models import ModelCallError, complete, complete_structured
from sandbox.profiles import Profile
from sandbox.prompts import Message, extraction_prompt, one_call_suffix
from sandbox.schemas import Action, ActionKind, ModelCall, Speaker

ActionName = Literal["none", "offer", "accept", "reject", "walk_away"]


class ExtractedAction(BaseModel):
    """What the extraction call returns for one message."""

    action: ActionName
    price: float | None = Field(None, description="Total price proposed, only with offer.")


class OneCallTurn(BaseModel):
    """What a one-call model returns for a whole turn."""

    message: str
    action: ActionName
    price: float | None = None
    terms: str | None = None


@dataclass
class TurnRequest:
    speaker: Speaker
    system_prompt: str
    conversation: list[Message]
    own_name: str
    other_name: str
    standing_offer: float | None
    currency: str
    seed: int


@dataclass
class TurnResult:
    message: str
    action: Action
    calls: list[ModelCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class JunkOutputError(ModelCallError):
    """The model produced no usable message twice."""


class TurnPolicy(Protocol):
    async def take_turn(self, request: TurnRequest) -> TurnResult: ...


def to_action(kind: str, price: float | None, terms: str | None = None) -> tuple[Action, list[str]]:
    """Turn raw extracted fields into a valid Action, noting anything that had to be dropped."""
    notes: list[str] = []
    action_kind = ActionKind(kind)
    if action_kind is ActionKind.OFFER and (price is None or price <= 0):
        notes.append("offer without a usable price treated as no action")
        return Action(), notes
    if action_kind is not ActionKind.OFFER:
        price = None
    return Action(kind=action_kind, price=price, terms=terms or None), notes


_LABEL = re.compile(r"^\s*[\(\[*]*\s*([A-Z][\w.'-]*(?: [A-Z][\w.'-]*)?)\s*[\)\]*]*\s*:\s*")
_ROLE_WORDS = {"prospect", "customer", "client", "salesperson", "sales rep", "rep", "seller", "buyer"}
MAX_MESSAGE_CHARS = 700


def clean_message(text: str, own_name: str, other_name: str, cut_off: bool = False) -> str:
    """Keep one speaker's words: drop 'Name:' labels, stop where the model starts voicing the other side.

    Small models often write both sides of a dialogue, or label their line with a name.
    Only the first paragraph is kept, trimmed at a sentence boundary.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if not paragraphs:
        return ""
    first = paragraphs[0]
    if len(first) < 30 and len(paragraphs) > 1:  # a salutation on its own line ("Dana,")
        first = first + "\n" + paragraphs[1]
    kept: list[str] = []
    for index, line in enumerate(first.splitlines()):
        match = _LABEL.match(line)
        if match:
            label = match.group(1).strip().lower()
            voices_other = label.startswith(other_name.lower()) if other_name else False
            if voices_other and (index > 0 or kept):
                break
            if voices_other or label.startswith(own_name.lower()) or label in _ROLE_WORDS:
                line = line[match.end() :]
        kept.append(line.strip())
    message = " ".join(part for part in kept if part).strip()
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS]
    return _whole_sentences(message) if cut_off else message


_SENTENCE_END = re.compile(r"[.!?\u2026][\"')\]]*(?=\s|$)")
_MIN_KEPT = 20  # never cut a message down to less than this: a short unpunctuated reply stands


def _whole_sentences(message: str) -> str:
    """Drop the last sentence of a message the token limit cut off.

    Words that were never finished were never said: "I can offer 21,000 if you sign for" must not
    reach the other side, the extraction call or the judge. A message with no sentence end at all
    is kept whole (a short reply like "Sure thing" needs no full stop).
    """
    ends = [m.end() for m in _SENTENCE_END.finditer(message)]
    if not ends or ends[-1] == len(message):
        return message
    kept = [end for end in ends if end >= _MIN_KEPT]
    return message[: kept[-1]] if kept else message


_AGREEMENT = re.compile(
    r"\b(deal|agree[ds]?|accept(ed)?|works for (me|us)|let'?s do (it|this)|sign (it|up|today)|"
    r"sounds good|yes,? (please|let'?s)|i'?ll take it|we'?ll take it|go ahead)\b",
    re.IGNORECASE,
)
_LEAVING = re.compile(
    r"\b(good-?bye|bye|walk away|walking away|not interested|no longer interested|end (this|the) (call|conversation)|"
    r"we'?re done|i'?m done|i'?ll pass|we'?ll pass|look elsewhere|going elsewhere)\b",
    re.IGNORECASE,
)


def verify_action(action: Action, message: str) -> tuple[Action, str | None]:
    """Cross-check an extracted action against the message it came from.

    The 135M extractor often labels small talk as an offer or an acceptance. An action
    that changes the state of the deal must be visible in the words: an offer states its
    price, an acceptance uses words of agreement, a walk-away uses words of leaving.
    """
    kind = action.kind
    if kind is ActionKind.OFFER and action.price is not None and not price_is_stated(action.price, message):
        return Action(), f"extracted offer {action.price:g} {UNSTATED}; treated as no action"
    if kind is ActionKind.ACCEPT and not _AGREEMENT.search(message):
        return Action(), "extracted accept has no words of agreement in the message; treated as no action"
    if kind is ActionKind.WALK_AWAY and not _LEAVING.search(message):
        return Action(), "extracted walk-away has no words of leaving in the message; treated as no action"
    return action, None


def _plain(text: str) -> str:
    return " ".join(text.lower().split())


NEAR_COPY = 0.8  # difflib ratio at or above which a message is a copy with a word or two changed


def _copies(text: str, line: str) -> bool:
    """``text`` is ``line`` again, or ``line`` with a word or two changed but the same amounts: a
    counter-offer in the other side's words ("I can do 20,000 USD if ...") is an answer, not a copy."""
    said, other = _plain(text), _plain(line)
    if said in other:
        return True
    if difflib.SequenceMatcher(None, said, other).ratio() < NEAR_COPY:
        return False
    return sorted(prices_in(text)) == sorted(prices_in(line))


def is_echo(text: str, conversation: list[Message]) -> bool:
    """A tiny model sometimes repeats the line it was given (or the opening cue) instead of answering."""
    if not conversation or conversation[-1]["role"] != "user" or len(_plain(text)) < 10:
        return False
    return _copies(text, conversation[-1]["content"])


def repeats_itself(text: str, conversation: list[Message]) -> bool:
    """The message is one the speaker has already said (the 135M model loops on its favourite line)."""
    if len(_plain(text)) < 20:
        return False
    return any(_copies(text, m["content"]) for m in conversation if m["role"] == "assistant")


def degenerate(text: str, conversation: list[Message]) -> str | None:
    """Why a message cannot stand as a turn (recorded on the discarded call), or None if it can."""
    if len(text) < 2 or not re.search(r"[A-Za-z]", text):
        return "empty or unusable message"
    if is_echo(text, conversation):
        return "message only echoes the other side's last line"
    if repeats_itself(text, conversation):
        return "message repeats one of the speaker's own earlier lines"
    return None


class TwoCallPolicy:
    """Message as plain text, then a small grammar-constrained extraction of the action."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.endpoint = profile.endpoint

    async def _message(self, request: TurnRequest) -> tuple[str, list[ModelCall]]:
        calls: list[ModelCall] = []
        messages = [{"role": "system", "content": request.system_prompt}, *request.conversation]
        profile = self.profile
        for attempt in range(profile.message_attempts):
            completion = await complete(
                self.endpoint,
                messages,
                purpose=f"{request.speaker}:message",
                temperature=profile.temperature,
                max_tokens=profile.max_tokens,
                seed=request.seed + attempt * 7919,
                timeout_s=profile.timeout_s,
                extra=profile.sampling(),
            )
            calls.append(completion.call)
            cut_off = completion.call.tokens_out >= profile.max_tokens  # it stopped at the limit, mid-thought
            text = clean_message(completion.text, request.own_name, request.other_name, cut_off)
            problem = degenerate(text, request.conversation)
            if problem is None:
                return text, calls
            completion.call.error = problem
        reasons = "; ".join(sorted({c.error for c in calls if c.error}))
        raise JunkOutputError(
            f"{self.endpoint.label} ({request.speaker}:message) gave no usable message in {len(calls)} tries"
            f" ({reasons})",
            calls,
        )

    async def take_turn(self, request: TurnRequest) -> TurnResult:
        message, calls = await self._message(request)
        prompt = extraction_prompt(request.speaker, message, request.standing_offer, request.currency)
        try:
            extracted, extraction_calls = await complete_structured(
                self.endpoint,
                [{"role": "user", "content": prompt}],
                ExtractedAction,
                purpose=f"{request.speaker}:extract",
                temperature=0.0,
                max_tokens=60,
                seed=request.seed,
                timeout_s=self.profile.timeout_s,
            )
        except ModelCallError as exc:
            exc.calls = calls + exc.calls
            raise
        action, notes = to_action(extracted.action, extracted.price)
        action, problem = verify_action(action, message)
        if problem:
            notes.append(problem)
        return TurnResult(message=message, action=action, calls=calls + extraction_calls, notes=notes)


class OneCallPolicy:
    """Message and action in one structured call, for models that write well inside JSON."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.endpoint = profile.endpoint

    async def take_turn(self, request: TurnRequest) -> TurnResult:
        system = request.system_prompt + "\n\n" + one_call_suffix()
        result, calls = await complete_structured(
            self.endpoint,
            [{"role": "system", "content": system}, *request.conversation],
            OneCallTurn,
            purpose=f"{request.speaker}:turn",
            temperature=self.profile.temperature,
            max_tokens=max(self.profile.max_tokens, 300),
            seed=request.seed,
            timeout_s=self.profile.timeout_s,
        )
        message = result.message.strip()
        if not message:
            raise JunkOutputError(f"{self.endpoint.label} ({request.speaker}:turn) returned an empty message", calls)
        action, notes = to_action(result.action, result.price, result.terms)
        return TurnResult(message=message, action=action, calls=calls, notes=notes)


def policy_for(profile: Profile) -> TurnPolicy:
    """The profile says which turn mode suits its model."""
    if profile.turn_mode == "two-call":
        return TwoCallPolicy(profile)
    return OneCallPolicy(profile)
