"""The browser face: one practice session served as a chat page on 127.0.0.1 (Starlette + uvicorn).

The page (``page.html``, inline CSS and JS, nothing fetched from elsewhere) sends every button as
the line a person would type in the terminal (``/offer 21600 ...``, ``/hint``, ``/undo``, ``/quit``),
so both faces go through the same command parser and the same session. A ``POST /api/send`` answers
once the session waits again (the agent has replied, the hint is written, the scorecard is ready),
with the whole state the page draws. One session per server: after the scorecard, Restart begins a
new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console

from sandbox.amounts import money_text
from sandbox.catalog import Catalog
from sandbox.practice.commands import CommandError, parse_line
from sandbox.practice.events import (
    Ended,
    Event,
    Intro,
    Notice,
    Prompt,
    Restarted,
    Said,
    Scored,
    Suggestion,
    Undone,
)
from sandbox.practice.session import PracticeSession, PracticeSetup
from sandbox.profiles import Profiles
from sandbox.schemas import Action, Rubric, Scenario, Turn

HOST = "127.0.0.1"  # loopback only: a practice page is for the person at this machine


def page_html() -> str:
    return files("sandbox.practice").joinpath("page.html").read_text(encoding="utf-8")


class WebIO:
    """:class:`~sandbox.practice.events.PracticeIO` for the page: lines come from POSTs, events become state."""

    def __init__(self, scenario: Scenario, names: dict[str, str], side: str):
        self.scenario = scenario
        self.names = names
        self.side = side
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.settled = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.phase: str | None = None
        self.intro: dict[str, Any] | None = None
        self.turns: list[dict[str, Any]] = []
        self.notices: list[dict[str, str]] = []
        self.hint: dict[str, Any] | None = None
        self.ended: dict[str, Any] | None = None
        self.scorecard: dict[str, Any] | None = None
        self.saved: list[str] = []

    def _action(self, action: Action) -> str:
        if action.kind.value == "none":
            return ""
        price = f" {money_text(self.scenario, action.price)}" if action.price is not None else ""
        return f"{action.kind.value}{price}"

    def _turn(self, turn: Turn) -> dict[str, Any]:
        return {
            "index": turn.index,
            "speaker": turn.speaker,
            "name": self.names[turn.speaker],
            "you": turn.speaker == self.side,
            "message": turn.message,
            "action": self._action(turn.action),
            "notes": list(turn.notes),
        }

    async def read(self, prompt: Prompt) -> str:
        self.phase = prompt.phase
        self.settled.set()
        line = await self.lines.get()
        self.phase = None
        self.settled.clear()
        return line

    def show(self, event: Event) -> None:
        if isinstance(event, Intro):
            self.intro = {
                "title": event.title,
                "side": event.side,
                "difficulty": event.difficulty,
                "brief": event.brief,
            }
        elif isinstance(event, Said):
            self.turns.append(self._turn(event.turn))
            self.hint = None
        elif isinstance(event, Notice):
            self.notices.append({"text": event.text, "level": event.level})
        elif isinstance(event, Suggestion):
            self.hint = {
                "source": event.source,
                "message": event.message,
                "action": self._action(event.action),
                "turn": event.turn,
                "error": event.error,
            }
        elif isinstance(event, Undone):
            self.turns = [self._turn(t) for t in event.kept]
            self.ended = None
            self.notices.append(
                {"text": f"undone: turns {', '.join(map(str, event.removed))} taken back", "level": "info"}
            )
        elif isinstance(event, Restarted):
            self.turns, self.ended, self.hint = [], None, None
            self.notices.append({"text": "restarted: the dialogue begins again", "level": "info"})
        elif isinstance(event, Ended):
            outcome = event.transcript.outcome
            price = f" at {money_text(self.scenario, outcome.price)}" if outcome.price is not None else ""
            self.ended = {
                "status": outcome.status.value,
                "text": f"{outcome.status.value}{price}",
                "reason": outcome.reason,
            }
        elif isinstance(event, Scored):
            self.notices = [n for n in self.notices if n["level"] == "error"]  # "scoring ..." is done
            self.scorecard = event.scorecard.model_dump(mode="json")
            self.saved = list(event.saved)

    def state(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "intro": self.intro,
            "turns": self.turns,
            "notices": self.notices,
            "hint": self.hint,
            "ended": self.ended,
            "scorecard": self.scorecard,
            "saved": self.saved,
        }


async def run_sessions(make: Any, io: WebIO) -> None:
    """Session after session: each plays to its scorecard, then waits for Restart."""
    while True:
        io.reset()
        try:
            await make(io).run()
        except Exception as exc:  # shown on the page, never a silent hang
            io.notices.append({"text": f"the session failed: {type(exc).__name__}: {exc}", "level": "error"})
        while True:
            line = await io.read(Prompt("scored"))
            io.notices = []
            try:
                command = parse_line(line)
            except CommandError:
                command = None
            if command is not None and command.name == "restart":
                break
            io.notices.append({"text": "the session is over: Restart to practise again", "level": "error"})


def build_app(io: WebIO) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    lock = asyncio.Lock()
    html = page_html()

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(io.state())

    async def send(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            line = str(body["line"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'POST /api/send needs a JSON body {"line": "..."}'}, status_code=400)
        async with lock:
            if io.phase is None:
                return JSONResponse({"error": "busy: the session is not waiting for a line"}, status_code=409)
            io.notices = []
            io.settled.clear()
            await io.lines.put(line)
            await io.settled.wait()
        return JSONResponse(io.state())

    return Starlette(routes=[Route("/", page), Route("/api/state", state), Route("/api/send", send, methods=["POST"])])


async def serve(
    setup: PracticeSetup,
    catalog: Catalog,
    rubric: Rubric,
    profiles: Profiles,
    runs_dir: Path,
    port: int,
    console: Console,
) -> None:
    """Serve until interrupted (Ctrl-C), printing the page's address once it listens."""
    import uvicorn

    from sandbox.practice.session import practice_cast

    cast = practice_cast(setup, catalog)
    names = {"rep": cast.scenario.rep_name, "prospect": cast.prospect.display_name}
    io = WebIO(cast.scenario, names, setup.side)

    def make(face: WebIO) -> PracticeSession:
        return PracticeSession(setup, catalog, rubric, profiles, face, runs_dir=runs_dir)

    config = uvicorn.Config(build_app(io), host=HOST, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    served = asyncio.create_task(server.serve())
    while not server.started:
        if served.done():
            await served  # it failed to start (the port is taken): its error, not a hang
            return
        await asyncio.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    console.print(f"practice page: http://{HOST}:{bound}/  (Ctrl-C stops the server)", soft_wrap=True)
    sessions = asyncio.create_task(run_sessions(make, io))
    try:
        await served
    finally:
        sessions.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sessions
