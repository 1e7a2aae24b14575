"""Credential scrubbing shared by everything that writes text out: cassettes and run logs.

Three nets: the exact values of environment variables that look like credentials; the shapes of
common API keys, masked ones included (``sk-****abcd``), so a key that never sat in the environment
(typed in a header) is caught too; and the value of any credential header or field, whatever it holds.
The last is there because provider libraries "mask" keys in their debug dumps by keeping a few of the
key's characters (litellm prints ``'Authorization': 'Be****cd'``), and a few characters are still too many.
"""

from __future__ import annotations

import os
import re

REDACTED = "REDACTED"
_KEY_ENV = re.compile(r"(API_KEY|_TOKEN|_SECRET)$")
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,}"
    r"|(?:sk-|AIza)[A-Za-z0-9_-]*\*+[A-Za-z0-9_*-]*)"  # the same, masked: a prefix, stars, the key's last characters
)
# A credential header or field (Authorization, Proxy-Authorization, api-key, x-api-key, api_key, OPENAI_API_KEY ...),
# its separator as a dict repr, JSON, a curl -H or a keyword argument writes it, an optional auth scheme, the value.
_CREDENTIAL_FIELD = re.compile(
    r"""(?P<name>[\w-]*(?:authorization|api[-_]?key))
        (?P<sep>['"]?[ \t]*[:=][ \t]*['"]?)
        (?P<scheme>(?:bearer|basic|token)[ \t]+)?
        (?P<value>[^\s'",}\]\\]+)""",
    re.IGNORECASE | re.VERBOSE,
)


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials, to scrub wherever they appear."""
    return [v for k, v in os.environ.items() if _KEY_ENV.search(k.upper()) and len(v) >= 8]


def redact(text: str, secrets: list[str] | None = None) -> str:
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    text = _CREDENTIAL_FIELD.sub(lambda m: f"{m['name']}{m['sep']}{m['scheme'] or ''}{REDACTED}", text)
    return _KEY_SHAPES.sub(REDACTED, text)
