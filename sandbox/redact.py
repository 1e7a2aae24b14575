"""Credential scrubbing shared by everything that writes text out: cassettes and run logs.

Two nets: the exact values of environment variables that look like credentials, and the shapes of
common API keys, so a key that never sat in the environment (typed in a header) is caught too.
"""

from __future__ import annotations

import os
import re

REDACTED = "REDACTED"
_KEY_ENV = re.compile(r"(API_KEY|_TOKEN|_SECRET)$")
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,})")


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials, to scrub wherever they appear."""
    return [v for k, v in os.environ.items() if _KEY_ENV.search(k.upper()) and len(v) >= 8]


def redact(text: str, secrets: list[str] | None = None) -> str:
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)
