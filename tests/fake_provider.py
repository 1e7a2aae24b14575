"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

Each request pops the next scripted reply; when the script runs out, the last reply repeats.
Bounded by construction: it only answers what the test sends, and stops with the context.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def accept_and_verdict(score: int = 4) -> dict[str, Any]:
    """One reply that is both a valid one-call turn (accept) and a valid judge verdict.

    Each schema ignores the other's keys, so a single scripted reply drives a whole episode:
    the rep's accept has nothing to accept (noted), the prospect accepts the list price, and
    every criterion gets ``score`` with a quote that exists in turn 1.
    """
    turn = {"message": "Fine, we accept.", "action": "accept", "price": None, "terms": None}
    return turn | {
        "score": score,
        "rationale": "Agrees plainly.",
        "evidence": [{"turn": 1, "quote": "Fine, we accept."}],
    }


FAULTS = ["429", "500", "503", "timeout", "reset", "malformed", "junk", "empty"]
FAULT_TIMEOUT_S = 1.5  # longer than the client timeout the fault tests use


@dataclass
class Reply:
    status: int = 200
    content: str | None = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # send this instead of a well-formed completion
    delay_s: float = 0.0

    def body(self, request_json: dict[str, Any]) -> str:
        if self.raw_body is not None:
            return self.raw_body
        if self.status != 200:
            return json.dumps({"error": {"message": f"scripted {self.status}", "type": "server_error"}})
        return json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": request_json.get("model", "fake"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": self.content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        )


class FakeProvider:
    """Run in a background thread so synchronous and asynchronous tests can both use it.

    ``script`` is a list of replies played in order, or a function from the request JSON to a
    reply, for providers whose answers depend on what they are asked (planted-effect simulations).
    """

    def __init__(
        self,
        script: list[Reply] | Callable[[dict[str, Any]], Reply],
        faults: list[str] | None = None,
        fault_rate: float = 0.0,
        seed: int = 0,
    ):
        self.responder = script if callable(script) else None
        self.script = [] if callable(script) else list(script)
        self.faults = faults or []
        self.fault_rate = fault_rate
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        """Inject one of ``faults`` with probability ``fault_rate`` (429, 5xx, timeout, reset, bad bodies)."""
        if not self.faults or self._rng.random() >= self.fault_rate:
            return None
        kind = self._rng.choice(self.faults)
        self.injected[kind] = self.injected.get(kind, 0) + 1
        if kind == "429":
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"})
        if kind in {"500", "503"}:
            return web.json_response({"error": {"message": f"scripted {kind}"}}, status=int(kind))
        if kind == "timeout":
            await asyncio.sleep(FAULT_TIMEOUT_S)
            return web.json_response({"error": {"message": "too late"}}, status=504)
        if kind == "reset":
            request.transport.abort()  # type: ignore[union-attr]
            raise ConnectionResetError("scripted connection reset")
        if kind == "malformed":
            return web.Response(status=200, text='{"id": "x", "choices": [', content_type="application/json")
        if kind == "junk":
            return web.Response(
                status=200, text=Reply(content="%%% junk ###").body({}), content_type="application/json"
            )
        if kind == "empty":
            body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
            return web.json_response(body | {"usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}})
        raise ValueError(f"unknown fault {kind}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.requests.append(payload)
        self.headers.append(dict(request.headers))
        faulty = await self._fault(request)
        if faulty is not None:
            return faulty
        if self.responder is not None:
            reply = self.responder(payload)
        else:
            reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(
            status=reply.status, text=reply.body(payload), headers=reply.headers, content_type="application/json"
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake provider did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def serve_forever() -> None:  # pragma: no cover - used by benchmarks, in their own process
    """``python -m tests.fake_provider --delay 0.5 --content '{...}'``: prints the API base, then serves."""
    import argparse
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--content", default="ok")
    args = parser.parse_args()
    with FakeProvider([Reply(content=args.content, delay_s=args.delay)]) as provider:
        print(provider.api_base, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    serve_forever()
