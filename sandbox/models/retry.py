"""The retry policy: tenacity alone retries (litellm and the wire transport are told not to).

Transient failures back off with jitter, honouring a provider's Retry-After; everything is bounded
in attempts and seconds, and every retry is logged with its reason.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from sandbox.models.errors import describe, is_transient
from sandbox.runlog import log

MAX_ATTEMPTS = 4
MAX_RETRY_SECONDS = 90.0
MAX_RETRY_AFTER_SECONDS = 60.0


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
    retry_after_cap: float | None = None,
    jitter: float = 1.0,
) -> AsyncRetrying:
    """``jitter``: up to that many seconds added to each back-off at random (tenacity's own default)."""
    backoff = wait_exponential_jitter(multiplier=initial_wait, max=20.0, jitter=jitter)
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(max_attempts) | stop_after_delay(max_seconds),
        wait=wait_retry_after(backoff, cap=retry_after_cap),
        reraise=True,
    )


def log_retry(label: str, purpose: str, state: RetryCallState) -> None:
    """Every retry goes to the run log with its reason: an overnight run's flakiness is visible after."""
    outcome = state.outcome
    failure = outcome.exception() if outcome is not None and outcome.failed else None
    reason = describe(failure) if failure is not None else "no result"
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    # litellm's Router names the deployment that failed (its id is the deployment's api_base).
    server = getattr(failure, "failed_deployment_id", None)
    where = f" at {server}" if isinstance(server, str) else ""
    log.warning(
        "retry %s%s (%s) after attempt %d: %s; waiting %.1f s",
        label,
        where,
        purpose,
        state.attempt_number,
        reason,
        wait,
    )


def log_fallback(label: str, fallback: str, purpose: str, attempt: int) -> None:
    """A call moving on to a fallback model is a line of its own: which model answered is in the run log."""
    log.warning(
        "fallback %s -> %s (%s) for attempt %d: %s has no deployment left to try", label, fallback, purpose,
        attempt, label,
    )  # fmt: skip


# The policy is a module attribute so tests can shorten the waits without patching internals.
RETRY_POLICY_FACTORY = retry_policy
