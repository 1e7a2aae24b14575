"""A scripted turn policy: plays fixed (message, action) pairs and records what it was shown."""

from __future__ import annotations

from sandbox.agents import TurnRequest, TurnResult
from sandbox.models import ModelCallError
from sandbox.schemas import Action, ActionKind, ModelCall


def say(message: str, kind: str = "none", price: float | None = None) -> tuple[str, Action]:
    return message, Action(kind=ActionKind(kind), price=price)


class ScriptedPolicy:
    def __init__(self, lines: list[tuple[str, Action] | Exception]):
        self.lines = list(lines)
        self.requests: list[TurnRequest] = []

    async def take_turn(self, request: TurnRequest) -> TurnResult:
        self.requests.append(request)
        line = self.lines.pop(0) if self.lines else ("(silence)", Action())
        if isinstance(line, Exception):
            raise line
        message, action = line
        call = ModelCall(
            model="scripted", purpose=f"{request.speaker}:turn", tokens_in=10, tokens_out=5, cost_usd=0.001
        )
        return TurnResult(message=message, action=action, calls=[call])


def junk_failure() -> ModelCallError:
    return ModelCallError(
        "scripted model returned junk twice", [ModelCall(model="scripted", purpose="x", error="junk")]
    )
