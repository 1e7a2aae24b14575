"""A local response cache keyed on the full request, so re-running or extending a spec pays nothing
for calls already made. Backed by diskcache (SQLite), safe across processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import diskcache

from sandbox.cassettes import _is_loopback

DEFAULT_DIR = Path(".sandbox-cache")


def request_key(model: str, api_base: str | None, payload: dict[str, Any]) -> str:
    """Everything that shapes the answer, nothing that does not: no key, no loopback port."""
    base = api_base
    if base:
        from urllib.parse import urlsplit

        host = urlsplit(base).hostname
        if _is_loopback(host):
            base = "loopback"
    canonical = json.dumps({"model": model, "api_base": base, **payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    def __init__(self, directory: Path | str = DEFAULT_DIR):
        self.directory = Path(directory)
        self._cache = diskcache.Cache(str(self.directory))

    def get(self, key: str) -> dict[str, Any] | None:
        return self._cache.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._cache.set(key, value)

    def close(self) -> None:
        self._cache.close()

    def __len__(self) -> int:
        return len(self._cache)
