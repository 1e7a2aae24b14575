"""How one request reaches its model: the OpenAI wire format over aiohttp, or litellm.

The endpoint's ``transport`` (chosen by its profile) decides. OpenAI itself and every server that
speaks its wire format (``POST {api_base}/chat/completions``) get one plain aiohttp request: the body
litellm would send (so cassettes recorded through either replay under both), without litellm's
import (about 4 s), the openai SDK's (about 0.6 s: it loads every type of its API) or their per-call
work. Every other provider goes through litellm, imported on its first request. Neither retries
(tenacity alone does); both report a cassette miss as its own error and return the response as an
object with ``choices`` and ``usage``. An error status raises :class:`ProviderStatusError`, which the
error rules read by its status code, as they read litellm's.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import types
from collections.abc import AsyncIterator
from typing import Any

from sandbox.models import prices
from sandbox.models.endpoint import Endpoint, split_model
from sandbox.models.errors import (
    CassetteMissError,
    EmptyResponseError,
    MissingKeyError,
    ProviderStatusError,
    cassette_miss_detail,
)

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


# --------------------------------------------------------------------------- the OpenAI wire format

# One aiohttp session (a pool of connections) per event loop: its connections belong to the loop that
# opened them, and a command, or a test session, may run several loops one after another. aiohttp,
# not httpx: at 64 requests in flight it spends about a fifth of httpx's CPU per request (measured
# in bench/README.md, "Start-up"), and litellm sends through it too. The session is closed when its
# loop shuts down (asyncio.run finalises open async generators; one holds the session); sessions of
# loops closed without that are dropped when the next one is made.
_SESSIONS: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}
OPENAI_API_BASE = "https://api.openai.com/v1"
MAX_CONNECTIONS = 1000  # the openai SDK's pool limit: the run's own limits decide what is in flight


async def _closed_with_its_loop(session: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await session.close()


async def http_session() -> Any:
    """The running loop's session, made on first use; it never retries (tenacity alone does)."""
    loop = asyncio.get_running_loop()
    held = _SESSIONS.get(loop)
    if held is None or held[0].closed:
        import aiohttp

        for gone in [other for other in _SESSIONS if other.is_closed()]:
            del _SESSIONS[gone]
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
        session = aiohttp.ClientSession(connector=connector, trust_env=True)  # proxies from the environment
        finaliser = _closed_with_its_loop(session)
        await anext(finaliser)
        held = _SESSIONS[loop] = (session, finaliser)
    return held[0]


async def close_clients() -> None:
    """Close the running loop's session (its pooled connections); the next request makes a new one."""
    held = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if held is not None:
        await held[1].aclose()


def openai_request(endpoint: Endpoint, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """URL, JSON body and headers for litellm's keyword arguments: the body litellm sends (its own
    arguments left out, ``extra_body`` merged in, the model under its own name: the provider prefix is
    litellm's routing), so a cassette recorded through either transport replays through both."""
    key = endpoint.api_key or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise MissingKeyError(f"no key is set for {endpoint.model}: OPENAI_API_KEY is not in the environment")
    base = endpoint.api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
    body: dict[str, Any] = {"model": split_model(endpoint.model)[1]}
    for name, value in kwargs.items():
        if name == "extra_body":
            body |= value or {}
        elif name not in LITELLM_ONLY:
            body[name] = value
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json", "Content-Type": "application/json"}
    return f"{(base or OPENAI_API_BASE).rstrip('/')}/chat/completions", body, headers


async def _send_openai(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    import aiohttp

    url, body, headers = openai_request(endpoint, kwargs)
    seconds = float(kwargs.get("timeout") or 60.0)
    # Each phase bounded, as the SDK's httpx timeout is (connect, then each read), not the whole reply.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    session = await http_session()
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()  # as httpx writes it
    async with session.post(url, data=data, headers=headers, timeout=timeout) as response:
        raw = await response.read()
        if response.status >= 400:
            raise ProviderStatusError.of(response.status, raw, response.headers)
    try:  # attributes, as the SDK's and litellm's response objects have them: choices[0].message.content, usage
        return json.loads(raw, object_hook=lambda fields: types.SimpleNamespace(**fields))
    except ValueError as exc:  # a reply cut short: a glitch, as litellm counts it
        raise EmptyResponseError(f"response was not JSON ({exc})") from exc


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
