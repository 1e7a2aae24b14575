"""The person's turn policy: the engine asks it for a turn like any agent's, and it waits for a line.

Lines that are not turns are handled while the engine waits: a bad command or ``/help`` is answered
and the person asked again; ``/hint`` asks the session for a suggestion; ``/undo``, ``/restart`` and
``/quit`` raise a :class:`PracticeControl`, which unwinds the engine's loop to the session (the
engine catches only model failures), and the session plays on from where the person asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sandbox.agents import TurnRequest, TurnResult
from sandbox.amounts import money_text
from sandbox.practice.commands import HELP, CommandError, parse_line
from sandbox.practice.events import Notice, PracticeIO, Prompt
from sandbox.schemas import Action, ActionKind, Scenario


class PracticeControl(Exception):  # noqa: N818 (a control signal, not an error)
    """The person asked to leave the dialogue's ordinary course."""


class Undo(PracticeControl):
    """Take back the person's last turn and the answer to it."""


class Restart(PracticeControl):
    """Start the dialogue again from nothing."""


class EndPractice(PracticeControl):
    """End the dialogue where it stands and score it."""


class HumanPolicy:
    """A :class:`~sandbox.agents.TurnPolicy` whose turns a person types."""

    def __init__(
        self,
        io: PracticeIO,
        scenario: Scenario,
        hint: Callable[[], Awaitable[None]],
        can_undo: Callable[[], bool],
        next_turn: Callable[[], int],
    ):
        self.io = io
        self.next_turn = next_turn
        self.scenario = scenario
        self.hint = hint
        self.can_undo = can_undo

    def _money(self, amount: float) -> str:
        return money_text(self.scenario, amount) or ""

    async def take_turn(self, request: TurnRequest) -> TurnResult:
        turn = self.next_turn()
        while True:
            try:
                line = await self.io.read(Prompt("turn", turn=turn, standing_offer=request.standing_offer))
            except EOFError:
                raise EndPractice() from None
            try:
                command = parse_line(line)
            except CommandError as exc:
                self.io.show(Notice(str(exc), "error"))
                continue
            if command is None:
                continue
            name = command.name
            if name == "help":
                self.io.show(Notice(HELP))
            elif name == "hint":
                await self.hint()
            elif name == "undo":
                if self.can_undo():
                    raise Undo()
                self.io.show(Notice("nothing to undo yet: you have not said anything", "error"))
            elif name == "restart":
                raise Restart()
            elif name == "quit":
                raise EndPractice()
            elif name == "accept" and request.standing_offer is None:
                self.io.show(Notice(f"nothing to accept: {request.other_name} has no offer on the table", "error"))
            else:
                return self._result(name, command.message, command.price, request)

    def _result(self, name: str, message: str, price: float | None, request: TurnRequest) -> TurnResult:
        """The turn a command says. A message left out is written for the person, stating the price, so
        an action is never silent; a message the person wrote is kept as written (and an offer whose
        words lack its price is noted by the engine, as an agent's is)."""
        if name == "offer" and price is not None:
            return TurnResult(
                message or f"I can offer {self._money(price)}.", Action(kind=ActionKind.OFFER, price=price)
            )
        if name == "accept":
            standing = self._money(request.standing_offer) if request.standing_offer is not None else "it"
            return TurnResult(message or f"Agreed: we have a deal at {standing}.", Action(kind=ActionKind.ACCEPT))
        if name == "walk":
            return TurnResult(
                message or "I'm going to walk away from this one. Goodbye.", Action(kind=ActionKind.WALK_AWAY)
            )
        return TurnResult(message, Action())
