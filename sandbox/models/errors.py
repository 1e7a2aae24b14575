"""What can go wrong with a model call, and which failures are worth another try.

Kept apart from the call itself so the retry policy, the runner's failure grouping and the tests
read one definition of "transient".
"""

from __future__ import annotations

import litellm

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
    """A 200 response with no choices: a provider glitch, worth another try."""


class StructuredOutputError(ModelCallError):
    """The model's output did not validate, even after one repair attempt."""


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


class ConfigurationError(ModelCallError):
    """A failure no retry can mend (no key, a rejected key, an unknown provider or model, nothing
    listening at the api_base): the call ends at once and says what to change."""


def _chain(exc: BaseException) -> list[BaseException]:
    """The explicit causes, and an implicit context only where Python would show it too."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return seen


_MISSING_KEY = ("missing credentials", "api_key client option must be set", "api key is missing", "no key is set")


def configuration_problem(exc: BaseException, answered_before: bool = False) -> str | None:
    """What to change, when ``exc`` says the request can never succeed as configured.

    litellm wraps these in many types (a missing OpenAI key arrives as an InternalServerError), so
    the whole cause chain and the message are read, not only the outermost class. A refused
    connection is a configuration error only at an endpoint that never answered: a server that has
    answered and then refuses is restarting, and worth the retries.
    """
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(marker in text for marker in _MISSING_KEY):
        return "no API key: set the provider's key in the environment (e.g. OPENAI_API_KEY)"
    if "llm provider not provided" in text:
        return "unknown provider: write the model as provider/name (e.g. openai/gpt-4o-mini), or give an api_base"
    if not answered_before and any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused: nothing listens at the api_base; start the server or fix the address"
    if any(isinstance(e, litellm.AuthenticationError | litellm.PermissionDeniedError) for e in chain) or any(
        status_code_of(e) in (401, 403) for e in chain
    ):
        return "credentials rejected: check the API key in the environment"
    if any(isinstance(e, litellm.NotFoundError) for e in chain) or any(status_code_of(e) == 404 for e in chain):
        return "not found: the server does not serve this model (or the api_base path is wrong)"
    return None


def is_transient(exc: BaseException, answered_before: bool = False) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections."""
    if isinstance(exc, CassetteMissError) or is_cassette_miss(exc):
        return False
    if configuration_problem(exc, answered_before) is not None:
        return False
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, (*_TRANSIENT, EmptyResponseError)):
        return True
    code = status_code_of(exc)
    return code is not None and (code == 429 or code >= 500)


def describe(exc: BaseException) -> str:
    """One line for a failure: the exception's kind and its message, whitespace folded, capped."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{name}: {text}" if text else name
