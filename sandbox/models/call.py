"""The call itself: one chat completion through the endpoint's transport (:mod:`sandbox.models.transports`:
the OpenAI wire format or litellm), retried by tenacity, recorded as a ModelCall.

:func:`complete` is the one way any code sends a request. A run's cache, limits and counters wrap
it from outside (:mod:`sandbox.models.context`); structured output is built on top of it
(:mod:`sandbox.models.structured`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from tenacity import retry_if_exception

from sandbox.models import retry, transports
from sandbox.models.context import CALL_CONTEXT
from sandbox.models.endpoint import ADDRESS_FIELDS, Endpoint
from sandbox.models.errors import (
    CassetteMissError,
    ConfigurationError,
    ModelCallError,
    configuration_problem,
    describe,
    is_transient,
)
from sandbox.schemas import ModelCall


@dataclass(frozen=True)
class ChatRequest:
    """One request as sent: the endpoint, why it is made, and litellm's keyword arguments."""

    endpoint: Endpoint
    purpose: str
    kwargs: dict[str, Any]

    @property
    def estimated_tokens(self) -> int:
        """For token-rate limits before the answer says how many were used."""
        messages = self.kwargs.get("messages") or []
        return sum(len(m.get("content") or "") for m in messages) // 4 + int(self.kwargs.get("max_tokens") or 0)

    def cache_payload(self) -> dict[str, Any]:
        """Everything that shapes the answer, nothing that does not (no key, no timeout)."""
        return {k: v for k, v in self.kwargs.items() if k not in ADDRESS_FIELDS and k != "timeout"}


class Completion(BaseModel):
    text: str
    call: ModelCall
    fallback: bool = False  # a fallback model answered: not the model's own answer (never cached as it)


Send = Callable[[ChatRequest, int], Awaitable[Any]]  # (request, attempt number) -> provider response


async def send_request(request: ChatRequest, attempt: int) -> Any:
    """One attempt, through the endpoint's transport (the OpenAI wire format or litellm)."""
    return await transports.send(request.endpoint, request.kwargs)


_ANSWERED: set[str] = set()  # api_bases that answered at least once in this process


def _answered(endpoint: Endpoint) -> bool:
    """Whether a refused connection here means a server restarting (worth the retries), not a wrong
    address. A model on several deployments: always; the Router sets the refusing one aside and the
    next attempt goes to another (the preflight checked each address before the run)."""
    if endpoint.transport == "router":
        return True
    return endpoint.api_base is not None and endpoint.api_base in _ANSWERED


@dataclass
class _Route:
    """Which model each attempt of one call asks: the model itself, then its fallbacks in order, each
    once the one before has no deployment left to try (it failed as many times as it has deployments,
    the Router setting each failed one aside, or the Router says all of them are cooling down). The
    move is one of tenacity's attempts like any other (counted, bounded) and a line of its own in the
    run log; the Router itself never falls back."""

    request: ChatRequest
    at: int = 0  # 0: the model itself; i: its fallback i - 1
    failures: int = 0  # on the model asked now, in this call
    failed: Endpoint | None = None  # the endpoint of the last failed attempt
    moved: bool = False  # the next attempt is the first on a fallback: logged as it starts

    @property
    def endpoint(self) -> Endpoint:
        chain = self.request.endpoint
        return chain if self.at == 0 else chain.fallbacks[self.at - 1]

    def attempt(self, number: int) -> ChatRequest:
        """The request for this attempt: the call's own, or the same request addressed to a fallback."""
        if self.at == 0:
            return self.request
        if self.moved and self.failed is not None:
            retry.log_fallback(self.failed.label, self.endpoint.label, self.request.purpose, number)
            self.moved = False
        return ChatRequest(self.endpoint, self.request.purpose, addressed(self.endpoint, self.request.kwargs))

    def fail(self, exc: BaseException) -> None:
        """Count a failed attempt; move on to the next fallback when this model has none left to try."""
        self.failed = endpoint = self.endpoint
        if self.at >= len(self.request.endpoint.fallbacks) or not is_transient(exc, _answered(endpoint)):
            return
        self.failures += 1
        # Every deployment tried once, but never so many that the attempts run out before a fallback.
        tries = min(max(len(endpoint.deployments), 1), retry.MAX_ATTEMPTS - 1)
        if self.failures >= tries or transports.no_deployment_left(exc):
            self.at, self.failures, self.moved = self.at + 1, 0, True


def addressed(endpoint: Endpoint, kwargs: dict[str, Any]) -> dict[str, Any]:
    """litellm's keyword arguments with the endpoint's routed name, api_base and key (and no other's)."""
    kwargs = {name: value for name, value in kwargs.items() if name not in ADDRESS_FIELDS}
    kwargs["model"] = endpoint.model
    if endpoint.api_base:
        kwargs["api_base"] = endpoint.api_base
    if endpoint.api_key:
        kwargs["api_key"] = endpoint.api_key
    return kwargs


async def with_retries(request: ChatRequest, send: Send) -> Completion:
    """Send with bounded retries of transient failures; a final failure keeps its call as evidence."""
    endpoint, purpose = request.endpoint, request.purpose
    attempts = 0
    started = time.perf_counter()
    route = _Route(request)
    try:
        policy = retry.RETRY_POLICY_FACTORY()
        policy.retry = retry_if_exception(lambda exc: is_transient(exc, _answered(route.failed or endpoint)))
        policy.before_sleep = lambda state: retry.log_retry((route.failed or endpoint).label, purpose, state)
        async for attempt in policy:
            with attempt:
                attempts += 1
                try:
                    response = await send(route.attempt(attempts), attempts)
                except Exception as exc:
                    route.fail(exc)
                    raise
        endpoint = route.endpoint  # the model that answered
    except CassetteMissError as exc:
        exc.calls = [failed_call(route.failed or endpoint, purpose, attempts, started, exc.reason)]
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        endpoint = route.failed or endpoint  # the model and server that failed last: a fallback's own
        reason = describe(exc)
        problem = configuration_problem(exc, _answered(endpoint))
        where = f" at {endpoint.api_base}" if endpoint.api_base else ""
        if problem is not None:
            raise ConfigurationError(
                f"{endpoint.model_id or endpoint.label}{where} ({purpose}): {problem} [{reason[:160]}]",
                [failed_call(endpoint, purpose, attempts, started, reason)],
            ) from exc
        raise ModelCallError(
            f"{endpoint.label}{where} ({purpose}) failed after {attempts} attempt(s): {reason}",
            [failed_call(endpoint, purpose, attempts, started, reason)],
        ) from exc

    if endpoint.api_base:
        _ANSWERED.add(endpoint.api_base)
    tokens_in, tokens_out = _usage(response)
    message = getattr(response.choices[0], "message", None)
    text = (getattr(message, "content", None) or "") if message is not None else ""
    call = ModelCall(
        model=endpoint.label,
        purpose=purpose,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        latency_s=round(time.perf_counter() - started, 4),
        cost_usd=transports.cost_of(endpoint, response),
        attempts=attempts,
    )
    return Completion(text=text, call=call, fallback=route.at > 0)


async def complete(
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    *,
    purpose: str,
    temperature: float = 0.7,
    max_tokens: int = 256,
    seed: int | None = None,
    timeout_s: float = 60.0,
    response_format: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Completion:
    """One chat completion with bounded retries of transient failures.

    Raises :class:`ModelCallError` (or :class:`CassetteMissError`) with the failed call
    recorded, so the caller can keep it as evidence of the failure.
    """
    kwargs: dict[str, Any] = {
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout_s,
        "num_retries": 0,
        "max_retries": 0,
    }
    if seed is not None:
        kwargs["seed"] = seed
    kwargs = addressed(endpoint, kwargs)
    if response_format is not None:
        kwargs["response_format"] = response_format
    if extra:
        kwargs.update({k: v for k, v in extra.items() if v is not None})
    request = ChatRequest(endpoint=endpoint, purpose=purpose, kwargs=kwargs)
    context = CALL_CONTEXT.get()
    if context is None:
        return await with_retries(request, send_request)
    return await context.complete(request, with_retries, send_request)


def failed_call(endpoint: Endpoint, purpose: str, attempts: int, started: float, reason: str) -> ModelCall:
    return ModelCall(
        model=endpoint.label,
        purpose=purpose,
        latency_s=round(time.perf_counter() - started, 4),
        attempts=max(attempts, 1),
        error=reason,
    )


def _usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)
