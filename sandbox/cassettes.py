"""Record and replay model traffic with vcrpy.

Requests match on method, host, port, path, query and body, except that any two loopback
addresses match each other: the embedded server picks a free port each run, and a replay
must not care. Secrets are scrubbed before anything is written. Replay is strict: a request
the cassette does not hold fails at once (never retried) with the cassette and request named.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import vcr
from vcr.request import Request

from sandbox.redact import REDACTED, redact

RECORD_ENV = "SANDBOX_RECORD"
RecordMode = Literal["none", "once", "new_episodes", "all"]

SECRET_HEADERS = [
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "set-cookie",
    "x-goog-api-key",
    "proxy-authorization",
]
SECRET_QUERY = ["key", "api_key", "api-key", "apikey", "access_token", "token"]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def match_host(r1: Request, r2: Request) -> None:
    if _is_loopback(r1.host) and _is_loopback(r2.host):
        return
    assert r1.host == r2.host, f"host {r1.host} != {r2.host}"


def match_port(r1: Request, r2: Request) -> None:
    if _is_loopback(r1.host) and _is_loopback(r2.host):
        return
    assert r1.port == r2.port, f"port {r1.port} != {r2.port}"


@functools.lru_cache(maxsize=4096)
def _canonical_body(body: bytes | str | None) -> str | None:
    """JSON bodies in one canonical form (cached: a replay compares every request with every record)."""
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return text


def match_body(r1: Request, r2: Request) -> None:
    """Bodies match as JSON values, so key order and whitespace from the client do not matter."""
    assert r1.body == r2.body or _canonical_body(r1.body) == _canonical_body(r2.body), "body differs"


def _scrub_request(request: Request) -> Request:
    if request.body:
        raw = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
        request.body = redact(raw).encode()
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers") or {}
    for name in list(headers):
        if name.lower() in SECRET_HEADERS:
            headers[name] = [REDACTED]
    body = response.get("body") or {}
    raw = body.get("string")
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
        scrubbed = redact(text)
        if scrubbed != text:
            body["string"] = scrubbed.encode()
    return response


def record_mode_from_env(default: RecordMode = "none") -> RecordMode:
    value = os.environ.get(RECORD_ENV, "").strip().lower()
    if value in {"1", "true", "yes", "once"}:
        return "once"
    if value in {"new", "new_episodes"}:
        return "new_episodes"
    if value == "all":
        return "all"
    return default


def make_vcr(cassette_dir: Path | str, record_mode: RecordMode = "none") -> vcr.VCR:
    recorder = vcr.VCR(
        cassette_library_dir=str(cassette_dir),
        record_mode=record_mode,
        match_on=["method", "sandbox_host", "sandbox_port", "path", "query", "sandbox_body"],
        filter_headers=[(name, REDACTED) for name in SECRET_HEADERS],
        filter_query_parameters=[(name, REDACTED) for name in SECRET_QUERY],
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("sandbox_host", match_host)
    recorder.register_matcher("sandbox_port", match_port)
    recorder.register_matcher("sandbox_body", match_body)
    return recorder


@contextlib.contextmanager
def use_cassette(path: Path | str, record_mode: RecordMode = "none") -> Iterator[Any]:
    """Replay (default) or record the model traffic inside the block to ``path``."""
    path = Path(path)
    if record_mode == "none" and not path.exists():
        raise FileNotFoundError(f"cassette {path} does not exist; record it with {RECORD_ENV}=1")
    recorder = make_vcr(path.parent, record_mode)
    with recorder.use_cassette(path.name) as cassette:
        yield cassette
