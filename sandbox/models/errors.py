"""What can go wrong with a model call, and which failures are worth another try.

Kept apart from the call itself so the retry policy, the runner's failure grouping and the tests
read one definition of "transient".
"""

from __future__ import annotations

import sys
from typing import Any

from sandbox.schemas import ModelCall


class ModelCallError(Exception):
    """A model call that failed for good. ``reason`` is one line; ``calls`` is the evidence."""

    def __init__(self, reason: str, calls: list[ModelCall] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.calls = calls or []


class CassetteMissError(ModelCallError):
    """A replayed test made a request the cassette does not hold. Never retried."""


class EmptyResponseError(Exception):
    """A 200 response with no choices, or whose body is not JSON: a provider glitch, worth another try."""


class ProviderStatusError(Exception):
    """An error status from an endpoint called over the OpenAI wire format: the code, the response's
    headers (its Retry-After is honoured) and the start of its body, in the openai SDK's words."""

    def __init__(self, message: str, status_code: int, headers: Any = None):
        super().__init__(message)
        self.status_code = status_code
        self.headers = dict(headers or {})

    @classmethod
    def of(cls, status: int, body: bytes, headers: Any) -> ProviderStatusError:
        """The error for a status, named as the openai SDK and litellm name it (a run's failure reasons
        read the same whichever transport sent the request)."""
        text = " ".join(body.decode("utf-8", "replace").split())[:300]
        kind = _BY_STATUS.get(status, InternalServerError if status >= 500 else cls)
        return kind(f"Error code: {status} - {text}", status, headers)


class BadRequestError(ProviderStatusError):
    """400"""


class AuthenticationError(ProviderStatusError):
    """401"""


class PermissionDeniedError(ProviderStatusError):
    """403"""


class NotFoundError(ProviderStatusError):
    """404"""


class ConflictError(ProviderStatusError):
    """409"""


class UnprocessableEntityError(ProviderStatusError):
    """422"""


class RateLimitError(ProviderStatusError):
    """429"""


class InternalServerError(ProviderStatusError):
    """5xx"""


_BY_STATUS: dict[int, type[ProviderStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


class MissingKeyError(Exception):
    """No API key given and none in the environment."""


class StructuredOutputError(ModelCallError):
    """The model's output did not validate, even after one repair attempt."""


def _wire_transient() -> tuple[type[BaseException], ...]:
    """Timeouts, dropped connections and replies cut short, as aiohttp raises them (a refused
    connection too: a configuration error only where the endpoint never answered, decided before)."""
    aiohttp = sys.modules.get("aiohttp")
    wire = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) if aiohttp is not None else ()
    return (TimeoutError, *wire)


def _openai() -> Any:
    """The openai SDK's module if it is loaded, else None: both transports raise its exception types
    (litellm's own subclass them), and where it was never imported, no exception can be one of them.
    So classifying a failure never pays for an import."""
    return sys.modules.get("openai")


def _transient_types(openai: Any) -> tuple[type[BaseException], ...]:
    # litellm's RateLimitError, InternalServerError, Timeout and APIConnectionError subclass these;
    # its ServiceUnavailableError (503) and BadGatewayError (502) are counted by their status code.
    return (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)


def _permanent_types(openai: Any) -> tuple[type[BaseException], ...]:
    # litellm's ContextWindowExceededError, ContentPolicyViolationError and UnsupportedParamsError are
    # BadRequestErrors.
    return (
        openai.AuthenticationError,
        openai.PermissionDeniedError,
        openai.BadRequestError,
        openai.NotFoundError,
        openai.UnprocessableEntityError,
    )


_CASSETTE_MARKERS = ("Can't overwrite existing cassette", "CannotOverwriteExistingCassetteException")


def cassette_miss_detail(exc: BaseException) -> str | None:
    """One line naming the cassette, the request, the nearest recorded request and the first field of
    the body that differs (:func:`sandbox.cassettes.describe_miss`), if ``exc`` is a cassette miss;
    vcrpy's own message where its exception does not carry the request.

    litellm and the openai SDK wrap transport errors, so the vcrpy exception is looked for down the
    cause chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    found: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "CannotOverwriteExistingCassetteException":
            from sandbox.cassettes import miss_from_exception  # vcrpy raised it: vcr is loaded already

            miss = miss_from_exception(current)
            return miss.line() if miss is not None else " ".join(str(current).split())
        if any(marker in str(current) for marker in _CASSETTE_MARKERS):
            found = " ".join(str(current).split())
        current = current.__cause__ or current.__context__
    return found


def is_cassette_miss(exc: BaseException) -> bool:
    return cassette_miss_detail(exc) is not None


def status_code_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


class ConfigurationError(ModelCallError):
    """A failure no retry can mend (no key, a rejected key, an unknown provider or model, nothing
    listening at the api_base): the call ends at once and says what to change."""


def _chain(exc: BaseException) -> list[BaseException]:
    """The explicit causes, an implicit context only where Python would show it too, and an exception
    held in another's arguments (httpcore wraps the OSError it caught that way, raising from None)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        todo.append(current.__cause__ or (None if current.__suppress_context__ else current.__context__))
    return seen


_MISSING_KEY = ("missing credentials", "api_key client option must be set", "api key is missing", "no key is set")


def configuration_problem(exc: BaseException, answered_before: bool = False) -> str | None:
    """What to change, when ``exc`` says the request can never succeed as configured.

    litellm wraps these in many types (a missing OpenAI key arrives as an InternalServerError; the
    openai SDK raises a bare OpenAIError), so the whole cause chain and the message are read, not
    only the outermost class. A refused
    connection is a configuration error only at an endpoint that never answered: a server that has
    answered and then refuses is restarting, and worth the retries.
    """
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(marker in text for marker in _MISSING_KEY):
        return "no API key: set the provider's key in the environment (e.g. OPENAI_API_KEY)"
    if "llm provider not provided" in text or "unmapped llm provider" in text:
        return (
            "unknown provider: write the model as provider/name (e.g. openai/gpt-4o-mini; "
            "openai/NAME for an OpenAI-compatible api_base)"
        )
    if not answered_before and any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused: nothing listens at the api_base; start the server or fix the address"
    openai = _openai()
    rejected = (openai.AuthenticationError, openai.PermissionDeniedError) if openai is not None else ()
    if any(isinstance(e, rejected) or status_code_of(e) in (401, 403) for e in chain):
        return "credentials rejected: check the API key in the environment"
    not_found = openai.NotFoundError if openai is not None else ()
    if any(isinstance(e, not_found) or status_code_of(e) == 404 for e in chain):
        return "not found: the server does not serve this model (or the api_base path is wrong)"
    return None


def is_transient(exc: BaseException, answered_before: bool = False) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections."""
    if isinstance(exc, CassetteMissError) or is_cassette_miss(exc):
        return False
    if configuration_problem(exc, answered_before) is not None:
        return False
    openai = _openai()
    if openai is not None and isinstance(exc, _permanent_types(openai)):
        return False
    if isinstance(exc, (EmptyResponseError, *_wire_transient())):
        return True
    if openai is not None and isinstance(exc, _transient_types(openai)):
        return True
    code = status_code_of(exc)
    # 408 (request timeout) and 409 (conflict, e.g. a busy slot) as litellm maps them: worth another try.
    return code is not None and (code in (408, 409, 429) or code >= 500)


def describe(exc: BaseException) -> str:
    """One line for a failure: the exception's kind and its message, whitespace folded, credentials
    scrubbed (a provider's 401 body quotes the rejected key, masked to its last characters), capped.
    This line reaches transcripts, run folders, reports and the terminal."""
    from sandbox.redact import redact

    name = type(exc).__name__
    text = redact(" ".join(str(exc).split()))
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{name}: {text}" if text else name
