"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

Each request pops the next scripted reply; when the script runs out, the last reply repeats.
Bounded by construction: it only answers what the test sends, and stops with the context.

Like a real server it can demand a key (``require_key``: 401 without ``Bearer <key>``) and serve only
some model names (``served_models``: 404 for the rest, vLLM's answer). The one-request check of
``sandbox models check`` and of a run's preflight is answered as a server honouring its schema would,
outside the script and never faulted, and kept apart in ``checks``: scripts, request counts and
fault rates see episode traffic only (``answer_checks=False`` sends checks through the script too).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from sandbox.checks import CHECK_PROMPT

CHECK_ANSWER = json.dumps({"status": "ready", "count": 3})


def accept_and_verdict(score: int = 4) -> dict[str, Any]:
    """One reply that is both a valid one-call turn (accept) and a valid judge verdict.

    Each schema ignores the other's keys, so a single scripted reply drives a whole episode:
    the rep's accept has nothing to accept (noted), the prospect accepts the list price, and
    every criterion gets ``score`` with a quote from each side (turn 0 and turn 1 both say it), so a
    criterion about either side has evidence from a turn it may quote.
    """
    turn = {"message": "Fine, we accept.", "action": "accept", "price": None, "terms": None}
    return turn | {
        "score": score,
        "rationale": "Agrees plainly.",
        "evidence": [{"turn": 0, "quote": "Fine, we accept."}, {"turn": 1, "quote": "Fine, we accept."}],
    }


WALK_LINE = "No thanks, I will walk away."


def deal_or_walk(walker: str = "Morgan", latency_s: float = 0.0) -> Callable[[dict[str, Any]], Reply]:
    """A deterministic script in which every negotiation ends: the prospect named ``walker`` (the
    skeptic) walks away on its first turn, every other prospect accepts the list price; judge calls get
    a verdict whose quote is in the transcript either way. Whatever faults are injected around it,
    a finished episode's outcome is known in advance, so a test can check nothing was mis-recorded."""
    walk = {"message": WALK_LINE, "action": "walk_away", "price": None, "terms": None}
    evidence = [{"turn": 0, "quote": "Fine, we accept."}, {"turn": 1, "quote": WALK_LINE}]  # the rep, the prospect
    walk |= {"score": 2, "rationale": "Leaves.", "evidence": evidence}
    deal = accept_and_verdict()

    def respond(payload: dict[str, Any]) -> Reply:
        messages = payload.get("messages") or [{}]
        system = str(messages[0].get("content", ""))
        everything = " ".join(str(m.get("content", "")) for m in messages)
        walks = system.startswith(f"You are {walker}.") or WALK_LINE in everything
        return Reply(content=json.dumps(walk if walks else deal), delay_s=latency_s)

    return respond


def spec_file(folder: Path, api_base: str, judge_model: str = "openai/gpt-4o", **overrides: Any) -> Path:
    """An experiment spec whose every side talks to the fake provider at ``api_base``: 2 strategies x 2
    prospects x 1 scenario x 2 seeds, judged; ``overrides`` replace top-level keys."""
    model = {"model": "openai/gpt-4o-mini", "api_base": api_base}
    spec = {
        "id": "fake",
        "strategies": ["eager-to-please", "assertive-consultant"],
        "prospects": ["price-haggler", "skeptic"],
        "scenarios": ["saas-seats"],
        "seeds": 2,
        "max_turns": 4,
        "models": {"rep": model, "prospect": model, "judge": {**model, "model": judge_model}},
        "concurrency": 4,
        "baseline": "eager-to-please",
    } | overrides
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


FAULTS = ["429", "500", "503", "timeout", "reset", "malformed", "junk", "empty"]
FAULT_TIMEOUT_S = 1.5  # longer than the client timeout the fault tests use


@dataclass
class Reply:
    status: int = 200
    content: str | None = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # send this instead of a well-formed completion
    delay_s: float = 0.0  # fixed latency per call (time to first token)
    tokens_per_s: float | None = None  # then generation time: completion tokens / tokens_per_s
    completion_tokens: int = 7
    jitter: float = 0.0  # latency drawn uniformly from [1 - jitter, 1 + jitter] x nominal: same mean

    def latency(self, rng: random.Random | None = None) -> float:
        generation = self.completion_tokens / self.tokens_per_s if self.tokens_per_s else 0.0
        nominal = self.delay_s + generation
        if self.jitter and rng is not None:
            return nominal * rng.uniform(1 - self.jitter, 1 + self.jitter)
        return nominal

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
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": 11 + self.completion_tokens,
                },
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
        keep_requests: bool = True,
        require_key: str | None = None,
        served_models: set[str] | None = None,
        answer_checks: bool = True,
        slots: int | None = None,
    ):
        self.responder = script if callable(script) else None
        self.script = [] if callable(script) else list(script)
        self.faults = faults or []
        self.fault_rate = fault_rate
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.keep_requests = keep_requests  # off for long benchmarks: memory stays flat
        self.require_key = require_key
        self.served_models = served_models
        self.answer_checks = answer_checks
        # At most this many requests answered at once, the rest queued (a server's batch size, as vLLM's
        # max_num_seqs): its capacity is slots / latency requests a second.
        self.slots = slots
        self._places: asyncio.Semaphore | None = None
        self.checks: list[dict[str, Any]] = []  # check requests (models check, preflight), answered or refused
        self.check_headers: list[dict[str, str]] = []
        self.served = 0
        self.handling_s = 0.0  # time spent inside the handler: what a client waits on the provider
        self.active = 0  # requests being answered now, and the most at once
        self.max_active = 0
        self.first_at: float | None = None  # wall clock (time.time) of the first request and last reply
        self.last_at: float | None = None
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

    def _refusal(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse | None:
        """What a real server says first: a wrong or missing key (401), a model it does not serve (404)."""
        if self.require_key is not None and request.headers.get("Authorization") != f"Bearer {self.require_key}":
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": 401}
            return web.json_response({"error": error}, status=401)
        model = str(payload.get("model", ""))
        if self.served_models is not None and model not in self.served_models:
            error = {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}
            return web.json_response({"error": error}, status=404)
        return None

    async def _check(self, request: web.Request) -> web.StreamResponse | None:
        """The check request, answered as a schema-honouring server would; None for any other request."""
        if not self.answer_checks:
            return None
        payload = await request.json()
        if CHECK_PROMPT not in str((payload.get("messages") or [{}])[0].get("content", "")):
            return None
        self.checks.append(payload)
        self.check_headers.append(dict(request.headers))
        refused = self._refusal(request, payload)
        if refused is not None:
            return refused
        return web.Response(text=Reply(content=CHECK_ANSWER).body(payload), content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        checked = await self._check(request)
        if checked is not None:
            return checked
        started = time.perf_counter()
        if self.first_at is None:
            self.first_at = time.time()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1
            self.served += 1
            self.handling_s += time.perf_counter() - started
            self.last_at = time.time()

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        stats = {
            "served": self.served,
            "handling_s": self.handling_s,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }
        return web.json_response(stats)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if self.keep_requests:
            self.requests.append(payload)
            self.headers.append(dict(request.headers))
        refused = self._refusal(request, payload)
        if refused is not None:
            return refused
        faulty = await self._fault(request)
        if faulty is not None:
            return faulty
        if self.responder is not None:
            reply = self.responder(payload)
        else:
            reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        latency = reply.latency(self._rng)
        if latency:
            if self.slots is not None:
                self._places = self._places or asyncio.Semaphore(self.slots)
                async with self._places:
                    await asyncio.sleep(latency)
            else:
                await asyncio.sleep(latency)
        return web.Response(
            status=reply.status, text=reply.body(payload), headers=reply.headers, content_type="application/json"
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/stats", self._stats)
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
    """``python -m tests.fake_provider --delay 0.5 [--tokens-per-s 50 --completion-tokens 40] --content '{...}'``.

    Prints the API base, then serves; ``GET /stats`` answers requests served and time spent answering.
    """
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--tokens-per-s", type=float, default=None)
    parser.add_argument("--completion-tokens", type=int, default=7)
    parser.add_argument("--jitter", type=float, default=0.0, help="latency uniform in [1-j, 1+j] x nominal")
    parser.add_argument("--content", default="ok")
    parser.add_argument("--slots", type=int, default=None, help="requests answered at once, the rest queued")
    args = parser.parse_args()
    reply = Reply(
        content=args.content,
        delay_s=args.delay,
        tokens_per_s=args.tokens_per_s,
        completion_tokens=args.completion_tokens,
        jitter=args.jitter,
    )
    with FakeProvider([reply], keep_requests=False, slots=args.slots) as provider:
        print(provider.api_base, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    serve_forever()
