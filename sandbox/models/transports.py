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
from sandbox.models.endpoint import ADDRESS_FIELDS, Endpoint, split_model
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
    sender = {"openai": _send_openai, "router": _send_router}.get(endpoint.transport, _send_litellm)
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
    if endpoint.transport in ("openai", "router"):  # a Router's deployments all serve one model: one price
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


# --------------------------------------------------------------------------- litellm's Router

# A deployment that fails (a refused connection, a 5xx, a timeout, a 429) is set aside at its first
# failure, for litellm's default cooldown: the next attempt, tenacity's, lands on another deployment,
# and the failed one is tried again by live traffic once the cooldown ends (a restarted server comes
# back by itself). 5 s is shorter than tenacity's back-off over its attempts, so a model whose every
# deployment is cooling down at once (litellm then answers a 429 without sending anything) is asked
# again after they come back, within the same call.
ROUTER_ALLOWED_FAILS = 0
ROUTER_COOLDOWN_S = 5.0
# The Router's own ways of sending a request again, all turned off: tenacity is the one retry loop
# (sandbox.models.call), and a fallback to another model is its explicit, logged step there.
ROUTER_NO_RETRIES: dict[str, Any] = {
    "num_retries": 0,
    "retry_after": 0,
    "max_fallbacks": 0,
    "fallbacks": [],
    "default_fallbacks": None,
    "context_window_fallbacks": [],
    "content_policy_fallbacks": [],
    "enable_weighted_failover": False,
}

# One Router per model per event loop (a run is one loop): its clients and its cooldowns belong to
# the loop that made them, as the aiohttp sessions above do.
_ROUTERS: dict[tuple[asyncio.AbstractEventLoop, Endpoint], Any] = {}


def router_model_list(endpoint: Endpoint) -> list[dict[str, Any]]:
    """The Router's deployments: one model group (the model's routed name), each server under its own
    name and key, its weight and limits as the Router reads them, its api_base as its id (so a failure's
    ``failed_deployment_id`` says which server failed)."""
    model_list = []
    for deployment in endpoint.deployments:
        server = deployment.endpoint
        params: dict[str, Any] = {"model": server.model, "api_base": server.api_base}
        if server.api_key:
            params["api_key"] = server.api_key
        for name in ("weight", "rpm", "tpm"):
            if getattr(deployment, name) is not None:
                params[name] = getattr(deployment, name)
        model_list.append(
            {"model_name": endpoint.model, "litellm_params": params, "model_info": {"id": server.api_base}}
        )
    return model_list


def routing_strategy(endpoint: Endpoint) -> str:
    """Weights given: the Router's weighted random pick, which keeps to them. Otherwise the deployment
    with the fewest requests in flight: it keeps equal servers equally busy (a random pick left one
    with 54 % of the calls and the run waiting on it, bench/README.md) and sends a slower one less."""
    return "simple-shuffle" if any(d.weight for d in endpoint.deployments) else "least-busy"


def router_for(endpoint: Endpoint) -> Any:
    """The running loop's Router for this model, built on first use."""
    loop = asyncio.get_running_loop()
    router = _ROUTERS.get((loop, endpoint))
    if router is None:
        for gone in [key for key in _ROUTERS if key[0].is_closed()]:
            del _ROUTERS[gone]
        limited = any(d.rpm or d.tpm for d in endpoint.deployments)
        router = _ROUTERS[(loop, endpoint)] = _litellm().Router(
            model_list=router_model_list(endpoint),
            routing_strategy=routing_strategy(endpoint),
            allowed_fails=ROUTER_ALLOWED_FAILS,
            cooldown_time=ROUTER_COOLDOWN_S,
            # A deployment over its rpm/tpm answers a 429 before any request is sent (and is cooled
            # down, so the retry goes to another); without a limit the check is not even built.
            optional_pre_call_checks=["enforce_model_rate_limits"] if limited else None,
            **ROUTER_NO_RETRIES,
        )
    return router


async def _send_router(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    # Where to send is the Router's choice: the deployment's own name, api_base and key, never the call's.
    call = {name: value for name, value in kwargs.items() if name not in ADDRESS_FIELDS}
    try:
        return await router_for(endpoint).acompletion(model=endpoint.model, **call)
    finally:
        # The Router releases what the attempt held (its count of requests in flight) in a task of its
        # own: one turn of the loop lets it finish, so none is left to be cancelled when the run ends.
        await asyncio.sleep(0)


def no_deployment_left(exc: BaseException) -> bool:
    """The Router answering without sending anything, every deployment of the model being set aside
    (cooling down after a failure, or over its rate limit): a 429, worth another try later."""
    return type(exc).__name__ == "RouterRateLimitError"
