"""The one place that talks to models.

Every request goes through :func:`complete` (free text) or :func:`complete_structured`
(JSON validated against a pydantic model), so retries, cassettes, token and cost
accounting and structured output are handled once. litellm does the provider work;
tenacity alone retries (litellm and the OpenAI SDK are told not to).
"""

from __future__ import annotations

import os

# Must be set before litellm is imported, or the import fetches a price map over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import contextvars  # noqa: E402
import email.utils  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import litellm  # noqa: E402
from pydantic import BaseModel, ValidationError  # noqa: E402
from tenacity import (  # noqa: E402
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from sandbox.runlog import log
from sandbox.schemas import ModelCall, ModelSettings  # noqa: E402

litellm.suppress_debug_info = True
litellm.telemetry = False

T = TypeVar("T", bound=BaseModel)

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
LOCAL_API_KEY = "sk-local-no-key"  # llama.cpp ignores it; the OpenAI client insists on one.

MAX_ATTEMPTS = 4
MAX_RETRY_SECONDS = 90.0
MAX_RETRY_AFTER_SECONDS = 60.0


# --------------------------------------------------------------------------- errors


class ModelCallError(Exception):
    """A model call that failed for good. ``reason`` is one line; ``calls`` is the evidence."""

    def __init__(self, reason: str, calls: list[ModelCall] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.calls = calls or []


class CassetteMissError(ModelCallError):
    """A replayed test made a request the cassette does not hold. Never retried."""


class EmptyResponseError(Exception):
    """A 200 response with no choices: a provider glitch, worth another try."""


class StructuredOutputError(ModelCallError):
    """The model's output did not validate, even after one repair attempt."""


# --------------------------------------------------------------------------- endpoint


@dataclass(frozen=True)
class Endpoint:
    """What litellm needs for one role: the routed model name and, for servers, where they are."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    structured: str = "auto"  # "json_schema" | "none" | "auto"
    model_id: str = ""  # the id the user wrote ("local", "openai/gpt-4o-mini"): the key for rate limits

    @property
    def label(self) -> str:
        return self.model


def endpoint_for(settings: ModelSettings, local_api_base: str | None = None) -> Endpoint:
    """Map a role's settings to an endpoint. ``local`` needs the embedded server's address."""
    if settings.is_local:
        if not local_api_base:
            raise ModelCallError("model 'local' needs the embedded server; none is running")
        return Endpoint(
            model=f"openai/{LOCAL_MODEL_NAME}",
            api_base=local_api_base,
            api_key=LOCAL_API_KEY,
            structured="json_schema",
            model_id=settings.model,
        )
    model = settings.model
    api_key = None
    if settings.api_base and "/" not in model:
        model = f"openai/{model}"  # any OpenAI-compatible server
        # Many self-hosted servers need no key, but the OpenAI client refuses to start without one.
        api_key = None if os.environ.get("OPENAI_API_KEY") else LOCAL_API_KEY
    return Endpoint(model=model, api_base=settings.api_base, api_key=api_key, model_id=settings.model)


def supports_json_schema(endpoint: Endpoint) -> bool:
    if endpoint.structured != "auto":
        return endpoint.structured == "json_schema"
    return _litellm_supports_schema(endpoint.model)


@functools.lru_cache(maxsize=256)
def _litellm_supports_schema(model: str) -> bool:
    """Asked once per model: litellm's lookup is slow for models it does not know."""
    try:
        return bool(litellm.supports_response_schema(model=model))
    except Exception:  # litellm logs and returns False for unknown models; be as lenient
        return False


# --------------------------------------------------------------------------- retry policy


_TRANSIENT = (
    litellm.RateLimitError,
    litellm.InternalServerError,
    litellm.ServiceUnavailableError,
    litellm.Timeout,
    litellm.APIConnectionError,
)
_PERMANENT = (
    litellm.AuthenticationError,
    litellm.PermissionDeniedError,
    litellm.BadRequestError,
    litellm.NotFoundError,
    litellm.ContextWindowExceededError,
    litellm.ContentPolicyViolationError,
    litellm.UnprocessableEntityError,
)
_CASSETTE_MARKERS = ("Can't overwrite existing cassette", "CannotOverwriteExistingCassetteException")


def cassette_miss_detail(exc: BaseException) -> str | None:
    """vcrpy's own message (it names the cassette and the request) if ``exc`` is a cassette miss.

    litellm wraps transport errors, so the vcrpy exception is looked for down the cause chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    found: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "CannotOverwriteExistingCassetteException":
            return " ".join(str(current).split())
        if any(marker in str(current) for marker in _CASSETTE_MARKERS):
            found = " ".join(str(current).split())
        current = current.__cause__ or current.__context__
    return found


def is_cassette_miss(exc: BaseException) -> bool:
    return cassette_miss_detail(exc) is not None


def status_code_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections."""
    if isinstance(exc, CassetteMissError) or is_cassette_miss(exc):
        return False
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, (*_TRANSIENT, EmptyResponseError)):
        return True
    code = status_code_of(exc)
    return code is not None and (code == 429 or code >= 500)


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (Retry-After or retry-after-ms), if any."""
    header_sources: list[Any] = []
    response = getattr(exc, "response", None)
    if response is not None:
        header_sources.append(getattr(response, "headers", None))
    header_sources.append(getattr(exc, "litellm_response_headers", None))
    header_sources.append(getattr(exc, "headers", None))
    for headers in header_sources:
        if not headers:
            continue
        try:
            lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        except Exception:
            continue
        if "retry-after-ms" in lowered:
            try:
                return float(lowered["retry-after-ms"]) / 1000.0
            except ValueError:
                pass
        value = lowered.get("retry-after")
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


class wait_retry_after:  # noqa: N801 - tenacity's wait strategies are lower-case callables
    """Honour the provider's Retry-After when it sends one; otherwise back off with jitter."""

    def __init__(self, fallback: Any, cap: float | None = None):
        self.fallback = fallback
        self.cap = cap

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after_seconds(exc) if exc else None
        if hinted is not None:
            return min(hinted, self.cap if self.cap is not None else MAX_RETRY_AFTER_SECONDS)
        return float(self.fallback(state))


def retry_policy(
    max_attempts: int = MAX_ATTEMPTS,
    max_seconds: float = MAX_RETRY_SECONDS,
    initial_wait: float = 1.0,
) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(max_attempts) | stop_after_delay(max_seconds),
        wait=wait_retry_after(wait_exponential_jitter(multiplier=initial_wait, max=20.0)),
        reraise=True,
    )


def _log_retry(label: str, purpose: str, state: RetryCallState) -> None:
    """Every retry goes to the run log with its reason: an overnight run's flakiness is visible after."""
    outcome = state.outcome
    reason = _describe(outcome.exception()) if outcome is not None and outcome.failed else "no result"
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "retry %s (%s) after attempt %d: %s; waiting %.1f s", label, purpose, state.attempt_number, reason, wait
    )


# The policy is a module attribute so tests can shorten the waits without patching internals.
RETRY_POLICY_FACTORY = retry_policy


# --------------------------------------------------------------------------- run-wide call settings


@dataclass
class CallContext:
    """What a run adds to every call: a response cache and per-model rate limiters (aiolimiter)."""

    cache: Any = None  # sandbox.cache.ResponseCache
    request_limits: dict[str, Any] = field(default_factory=dict)  # model id -> AsyncLimiter (requests)
    token_limits: dict[str, Any] = field(default_factory=dict)  # model id -> AsyncLimiter (tokens)
    in_flight: dict[str, asyncio.Semaphore] = field(default_factory=dict)  # model id -> places for requests at once
    calls_made: int = 0  # requests sent, retries included
    retries: int = 0
    cache_hits: int = 0


CALL_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("sandbox_call_context", default=None)


def _estimated_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    return sum(len(m.get("content") or "") for m in messages) // 4 + max_tokens


async def _respect_limits(context: CallContext | None, model: str, tokens: int) -> None:
    if context is None:
        return
    limiter = context.request_limits.get(model)
    if limiter is not None:
        await limiter.acquire()
    token_limiter = context.token_limits.get(model)
    if token_limiter is not None:
        await token_limiter.acquire(min(tokens, token_limiter.max_rate))


@contextlib.asynccontextmanager
async def _within_limits(context: CallContext | None, model: str, tokens: int) -> AsyncIterator[None]:
    """Everything a run limits per model, around one request: its rate limits, then a place among the
    requests allowed at once (held for the request only, so its timeout never runs while it queues)."""
    await _respect_limits(context, model, tokens)
    place = context.in_flight.get(model) if context is not None else None
    async with place or contextlib.nullcontext():
        yield


# --------------------------------------------------------------------------- calls


class Completion(BaseModel):
    text: str
    call: ModelCall


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{name}: {text}" if text else name


def _usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


_UNPRICED: set[str] = set()  # models litellm has no price for: not asked again (the lookup raises, slowly)


def _cost(response: Any, model: str) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        if model in _UNPRICED:
            return None
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:
            _UNPRICED.add(model)
            return None
    try:
        value = float(cost)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


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
        "model": endpoint.model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout_s,
        "num_retries": 0,
        "max_retries": 0,
    }
    if seed is not None:
        kwargs["seed"] = seed
    if endpoint.api_base:
        kwargs["api_base"] = endpoint.api_base
    if endpoint.api_key:
        kwargs["api_key"] = endpoint.api_key
    if response_format is not None:
        kwargs["response_format"] = response_format
    if extra:
        kwargs.update({k: v for k, v in extra.items() if v is not None})

    context = CALL_CONTEXT.get()
    cache_key = None
    if context is not None and context.cache is not None:
        from sandbox.cache import request_key

        payload = {k: v for k, v in kwargs.items() if k not in {"model", "api_base", "api_key", "timeout"}}
        cache_key = request_key(endpoint.model, endpoint.api_base, payload)
        hit = context.cache.get(cache_key)
        if hit is not None:
            context.cache_hits += 1
            call = ModelCall(
                model=endpoint.label,
                purpose=purpose,
                tokens_in=hit["tokens_in"],
                tokens_out=hit["tokens_out"],
                cost_usd=None,
                attempts=0,
                cached=True,
            )
            return Completion(text=hit["text"], call=call)

    attempts = 0
    started = time.perf_counter()
    try:
        policy = RETRY_POLICY_FACTORY()
        policy.before_sleep = functools.partial(_log_retry, endpoint.label, purpose)
        async for attempt in policy:
            with attempt:
                attempts += 1
                if context is not None:
                    context.calls_made += 1
                    context.retries += attempts > 1
                try:
                    async with _within_limits(context, endpoint.model_id, _estimated_tokens(messages, max_tokens)):
                        response = await litellm.acompletion(**kwargs)
                except Exception as exc:
                    detail = cassette_miss_detail(exc)
                    if detail is not None:
                        raise CassetteMissError(f"cassette miss (never retried): {detail[:500]}") from exc
                    raise
                if not (getattr(response, "choices", None) or []):
                    raise EmptyResponseError("response had no choices")
    except CassetteMissError as exc:
        exc.calls = [_failed_call(endpoint, purpose, attempts, started, exc.reason)]
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        reason = _describe(exc)
        raise ModelCallError(
            f"{endpoint.label} ({purpose}) failed after {attempts} attempt(s): {reason}",
            [_failed_call(endpoint, purpose, attempts, started, reason)],
        ) from exc

    tokens_in, tokens_out = _usage(response)
    message = getattr(response.choices[0], "message", None)
    text = (getattr(message, "content", None) or "") if message is not None else ""
    call = ModelCall(
        model=endpoint.label,
        purpose=purpose,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        latency_s=round(time.perf_counter() - started, 4),
        cost_usd=_cost(response, endpoint.model),
        attempts=attempts,
    )
    if cache_key is not None:
        context.cache.set(  # type: ignore[union-attr]
            cache_key, {"text": text, "tokens_in": tokens_in, "tokens_out": tokens_out, "cost": call.cost_usd}
        )
    return Completion(text=text, call=call)


def _failed_call(endpoint: Endpoint, purpose: str, attempts: int, started: float, reason: str) -> ModelCall:
    return ModelCall(
        model=endpoint.label,
        purpose=purpose,
        latency_s=round(time.perf_counter() - started, 4),
        attempts=max(attempts, 1),
        error=reason,
    )


@functools.lru_cache(maxsize=256)
def _schema_text(schema_model: type[BaseModel]) -> str:
    return json.dumps(schema_model.model_json_schema())


def schema_of(schema_model: type[BaseModel]) -> dict[str, Any]:
    """A fresh copy of the model's JSON schema: pydantic rebuilds it on every call (about 1 ms each
    turn, the largest cost of our own per call), and callers downstream may mutate what they get."""
    return json.loads(_schema_text(schema_model))


def json_schema_format(schema_model: type[BaseModel], strict: bool = True) -> dict[str, Any]:
    """``response_format`` for a pydantic model.

    ``strict`` only where the server turns any schema into a grammar (llama.cpp): OpenAI's strict
    mode refuses schemas with optional fields or length limits, which pydantic models often have,
    so hosted providers get the schema as guidance and the output is validated (and repaired) here.
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema_model.__name__,
            "schema": schema_of(schema_model),
            "strict": strict,
        },
    }


def parse_json_output(text: str, schema_model: type[T]) -> T:
    """Validate model output, tolerating code fences and prose around one JSON object."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`")
        if cleaned.lower().startswith("json"):
            cleaned = cleaned[4:]
    try:
        return schema_model.model_validate_json(cleaned)
    except ValidationError:
        start, end = cleaned.find("{"), cleaned.rfind("}")
        if start == -1 or end <= start:
            raise
        return schema_model.model_validate(json.loads(cleaned[start : end + 1]))


async def complete_structured(
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    schema_model: type[T],
    *,
    purpose: str,
    temperature: float = 0.0,
    max_tokens: int = 200,
    seed: int | None = None,
    timeout_s: float = 60.0,
) -> tuple[T, list[ModelCall]]:
    """Ask for JSON matching ``schema_model``; on invalid output, one repair, then fail.

    Where the provider supports JSON schemas (llama.cpp turns them into a grammar) the
    schema goes in ``response_format``; otherwise it is spelled out in the prompt.
    """
    use_schema = supports_json_schema(endpoint)
    conversation = list(messages)
    if not use_schema:
        schema_text = _schema_text(schema_model)
        conversation = conversation + [
            {
                "role": "user",
                "content": f"Reply with one JSON object matching this schema, nothing else:\n{schema_text}",
            }
        ]
    calls: list[ModelCall] = []
    last_problem = ""
    for attempt in range(2):
        try:
            completion = await complete(
                endpoint,
                conversation,
                purpose=purpose if attempt == 0 else f"{purpose}:repair",
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                timeout_s=timeout_s,
                response_format=json_schema_format(schema_model, strict=endpoint.structured == "json_schema")
                if use_schema
                else None,
            )
        except ModelCallError as exc:
            # A repair that fails for good must not lose the first call: its tokens and retries were spent.
            exc.calls = calls + exc.calls
            raise
        calls.append(completion.call)
        try:
            return parse_json_output(completion.text, schema_model), calls
        except (ValidationError, ValueError) as exc:
            last_problem = " ".join(str(exc).split())[:200]
            completion.call.error = f"invalid output: {last_problem}"
            conversation = conversation + [
                {"role": "assistant", "content": completion.text},
                {
                    "role": "user",
                    "content": f"That was not valid ({last_problem}). Reply again with only the corrected JSON.",
                },
            ]
    raise StructuredOutputError(
        f"{endpoint.label} ({purpose}) returned invalid {schema_model.__name__} twice: {last_problem}", calls
    )
