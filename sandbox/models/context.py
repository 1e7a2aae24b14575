"""What a run adds around every model call: a response cache, per-model limits and counters.

These wrap the call from outside (see :meth:`CallContext.complete`); the call itself knows nothing
of them, so a call made outside a run (one negotiation, a test) is the bare call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.schemas import ModelCall

if TYPE_CHECKING:
    from sandbox.models.call import ChatRequest, Completion, Send

    Retrying = Callable[[ChatRequest, Send], Awaitable[Completion]]


@dataclass
class CallContext:
    """A run's cache (sandbox.cache.ResponseCache), rate limiters (aiolimiter) and caps on requests
    at once, keyed by the model id the user wrote, plus the live counts the progress bar shows."""

    cache: Any = None
    request_limits: dict[str, Any] = field(default_factory=dict)  # model id -> AsyncLimiter (requests)
    token_limits: dict[str, Any] = field(default_factory=dict)  # model id -> AsyncLimiter (tokens)
    in_flight: dict[str, asyncio.Semaphore] = field(default_factory=dict)  # model id -> places at once
    calls_made: int = 0  # requests sent, retries included
    retries: int = 0
    cache_hits: int = 0

    async def complete(self, request: ChatRequest, retrying: Retrying, send: Send) -> Completion:
        """The cache answers first; otherwise every attempt is counted and sent within the limits."""
        key = self._cache_key(request)
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                return _from_cache(request, hit)
        completion = await retrying(request, self._limited(send))
        if key is not None and not completion.fallback:
            call = completion.call
            self.cache.set(key, {"text": completion.text, "tokens_in": call.tokens_in, "tokens_out": call.tokens_out})
        return completion

    def _limited(self, send: Send) -> Send:
        async def limited(request: ChatRequest, attempt: int) -> Any:
            self.calls_made += 1
            self.retries += attempt > 1
            async with self.within_limits(request.endpoint.model_id, request.estimated_tokens):
                return await send(request, attempt)

        return limited

    def _cache_key(self, request: ChatRequest) -> str | None:
        if self.cache is None:
            return None
        from sandbox.cache import request_key

        return request_key(request.endpoint.model, request.endpoint.api_base, request.cache_payload())

    async def respect_limits(self, model_id: str, tokens: int) -> None:
        limiter = self.request_limits.get(model_id)
        if limiter is not None:
            await limiter.acquire()
        token_limiter = self.token_limits.get(model_id)
        if token_limiter is not None:
            await token_limiter.acquire(min(tokens, token_limiter.max_rate))

    @contextlib.asynccontextmanager
    async def within_limits(self, model_id: str, tokens: int) -> AsyncIterator[None]:
        """Rate limits first, then a place among the requests allowed at once (held for the request
        only, so its timeout never runs while it queues)."""
        await self.respect_limits(model_id, tokens)
        place = self.in_flight.get(model_id)
        async with place or contextlib.nullcontext():
            yield


def _from_cache(request: ChatRequest, hit: dict[str, Any]) -> Completion:
    from sandbox.models.call import Completion

    call = ModelCall(
        model=request.endpoint.label,
        purpose=request.purpose,
        tokens_in=hit["tokens_in"],
        tokens_out=hit["tokens_out"],
        cost_usd=None,
        attempts=0,
        cached=True,
    )
    return Completion(text=hit["text"], call=call)


CALL_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("sandbox_call_context", default=None)
