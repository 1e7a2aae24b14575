"""What a practice session tells its face (terminal or page), and the one thing it asks of it: a line.

A face implements :class:`PracticeIO`; the session never prints or serves anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from sandbox.schemas import Action, Speaker, Transcript, Turn

if TYPE_CHECKING:
    from sandbox.practice.scorecard import Scorecard

Phase = Literal["turn", "ended", "scored"]


@dataclass(frozen=True)
class Intro:
    """Who is who, and the person's own brief: what their side knows and the other side does not."""

    title: str
    side: Speaker
    names: dict[Speaker, str]
    difficulty: str
    brief: list[str]
    help: str


@dataclass(frozen=True)
class Said:
    """A turn the engine has played, the person's or the agent's, with the engine's notes on it."""

    turn: Turn
    by_person: bool


@dataclass(frozen=True)
class Notice:
    text: str
    level: Literal["error", "info"] = "info"


@dataclass(frozen=True)
class Suggestion:
    """What the hint strategy would say now: shown to the person, never sent."""

    source: str
    message: str
    action: Action
    turn: int
    error: str | None = None


@dataclass(frozen=True)
class Undone:
    removed: list[int]
    kept: list[Turn] = field(default_factory=list)


@dataclass(frozen=True)
class Restarted:
    pass


@dataclass(frozen=True)
class Ended:
    """The dialogue is over (deal, walk-away, turn limit, failure or the person's /quit); not yet scored."""

    transcript: Transcript
    by_person: bool


@dataclass(frozen=True)
class Scored:
    scorecard: Scorecard
    saved: list[str]


Event = Intro | Said | Notice | Suggestion | Undone | Restarted | Ended | Scored


@dataclass(frozen=True)
class Prompt:
    """What the session waits for: the person's next turn, or what to do with a dialogue that has ended."""

    phase: Phase
    turn: int = 0
    standing_offer: float | None = None


class PracticeIO(Protocol):
    async def read(self, prompt: Prompt) -> str:
        """The person's next line (raises EOFError when there will be none)."""
        ...

    def show(self, event: Event) -> None: ...
