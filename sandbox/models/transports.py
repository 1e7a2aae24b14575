"""How one request reaches its model: the openai SDK's async client, or litellm.

The endpoint's ``transport`` (chosen by its profile) decides. OpenAI itself and every server that
speaks its wire format get the SDK directly: the same request body litellm would send (so cassettes
recorded through either replay under both), without litellm's import (about 4 s) or its per-call
work. Every other provider goes through litellm, imported on its first request. Both are told never
to retry (tenacity alone does), both report a cassette miss as its own error, and both return the
provider's response as an object with ``choices`` and ``usage``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import weakref
from typing import Any

from sandbox.models import prices
from sandbox.models.endpoint import Endpoint
from sandbox.models.errors import CassetteMissError, EmptyResponseError, cassette_miss_detail

# litellm's own arguments, never part of a request body.
LITELLM_ONLY = {"model", "api_base", "api_key", "timeout", "num_retries", "max_retries"}


async def send(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    """One request (litellm's keyword arguments) through the endpoint's transport; no retries here."""
    sender = _send_openai if endpoint.transport == "openai" else _send_litellm
    try:
        response = await sender(endpoint, kwargs)
    except Exception as exc:
        detail = cassette_miss_detail(exc)
        if detail is not None:
            raise CassetteMissError(f"cassette miss (never retried): {detail[:500]}") from exc
        raise
    if not (getattr(response, "choices", None) or []):
        raise EmptyResponseError("response had no choices")
    return response


def cost_of(endpoint: Endpoint, response: Any) -> float | None:
    """What the response cost, where the price is known."""
    if not endpoint.priced:
        return None
    if endpoint.transport == "openai":
        return prices.cost_usd(endpoint.model, getattr(response, "usage", None))
    return _litellm_cost(response, endpoint.model)


# --------------------------------------------------------------------------- the openai SDK

# One client per (api_base, key) and event loop: its connection pool belongs to the loop that opened it,
# and a command (or a test session) may run several loops one after another.
_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str | None, str | None], Any]] = (
    weakref.WeakKeyDictionary()
)


def openai_client(endpoint: Endpoint) -> Any:
    """The loop's client for this endpoint, made on first use. With no key given, the SDK reads
    ``OPENAI_API_KEY`` (and says so in one line when it is not set, a configuration error)."""
    from openai import AsyncOpenAI

    clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
    key = (endpoint.api_base, endpoint.api_key)
    client = clients.get(key)
    if client is None:
        base_url = endpoint.api_base or os.environ.get("OPENAI_API_BASE")  # None: OPENAI_BASE_URL or OpenAI's
        client = AsyncOpenAI(api_key=endpoint.api_key, base_url=base_url, max_retries=0)
        clients[key] = client
    return client


async def close_clients() -> None:
    """Close this loop's clients (their pooled connections); the next request makes new ones."""
    for client in (_CLIENTS.pop(asyncio.get_running_loop(), None) or {}).values():
        await client.close()


@functools.lru_cache(maxsize=1)
def _sdk_parameters() -> frozenset[str]:
    """The request fields the SDK's ``chat.completions.create`` takes by name; any other goes in
    ``extra_body``, as litellm passes them, so the JSON body is the same."""
    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self", "extra_body", "timeout"}


def openai_request(endpoint: Endpoint, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The SDK's arguments for litellm's: the model's own name (the provider prefix is litellm's
    routing), the same fields, the timeout per request."""
    known = _sdk_parameters()
    arguments: dict[str, Any] = {"model": endpoint.model.split("/", 1)[1] if "/" in endpoint.model else endpoint.model}
    extra: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in LITELLM_ONLY:
            continue
        if name == "extra_body":
            extra |= value or {}
        elif name in known:
            arguments[name] = value
        else:
            extra[name] = value
    if extra:
        arguments["extra_body"] = extra
    if "timeout" in kwargs:
        arguments["timeout"] = kwargs["timeout"]
    return arguments


async def _send_openai(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    client = openai_client(endpoint)
    return await client.chat.completions.create(**openai_request(endpoint, kwargs))


# --------------------------------------------------------------------------- litellm


@functools.lru_cache(maxsize=1)
def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else its import fetches prices online
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


async def _send_litellm(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    return await _litellm().acompletion(**kwargs)


_UNPRICED: set[str] = set()  # models litellm has no price for: not asked again (the lookup raises, slowly)


def _litellm_cost(response: Any, model: str) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        if model in _UNPRICED:
            return None
        try:
            cost = _litellm().completion_cost(completion_response=response)
        except Exception:
            _UNPRICED.add(model)
            return None
    try:
        value = float(cost)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
