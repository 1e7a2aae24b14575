"""Record and replay model traffic with vcrpy.

Requests match on method, host, port, path, query and body, except that any two loopback
addresses match each other: the embedded server picks a free port each run, and a replay
must not care. Secrets are scrubbed before anything is written. Replay is strict: a request
the cassette does not hold fails at once (never retried) with the cassette, the request and the
nearest recorded request named, and which field of the body differs (:func:`describe_miss`).

A replay under ``SANDBOX_CASSETTE_CHECK=DIR`` is a check (``sandbox cassettes check``): a request
the cassette does not hold is answered with its nearest unplayed recording instead of failing, so
the run goes on and every miss is collected; when the cassette closes, one JSON line saying what was
read and what missed goes to a file in DIR.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import vcr
from vcr.request import Request

from sandbox.redact import REDACTED, redact

RECORD_ENV = "SANDBOX_RECORD"
CHECK_ENV = "SANDBOX_CASSETTE_CHECK"  # a folder: replays collect their misses and log what they read there
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
    if r1.host != r2.host:
        raise AssertionError(f"host {r1.host} != {r2.host}")


def match_port(r1: Request, r2: Request) -> None:
    if _is_loopback(r1.host) and _is_loopback(r2.host):
        return
    if r1.port != r2.port:
        raise AssertionError(f"port {r1.port} != {r2.port}")


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
    """Bodies match as JSON values, so key order and whitespace from the client do not matter.

    The matchers raise rather than ``assert``: pytest rewrites the asserts of every module of a package
    that ships a pytest plugin (this one does), and a rewritten assert that fails explains itself with
    a diff of both bodies, which made a replay of a few hundred requests 20 times slower under pytest."""
    if r1.body != r2.body and _canonical_body(r1.body) != _canonical_body(r2.body):
        raise AssertionError("body differs")


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


def make_vcr(
    cassette_dir: Path | str,
    record_mode: RecordMode = "none",
    before_record_request: Any = _scrub_request,
) -> vcr.VCR:
    recorder = vcr.VCR(
        cassette_library_dir=str(cassette_dir),
        record_mode=record_mode,
        match_on=["method", "sandbox_host", "sandbox_port", "path", "query", "sandbox_body"],
        filter_headers=[(name, REDACTED) for name in SECRET_HEADERS],
        filter_query_parameters=[(name, REDACTED) for name in SECRET_QUERY],
        before_record_request=before_record_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("sandbox_host", match_host)
    recorder.register_matcher("sandbox_port", match_port)
    recorder.register_matcher("sandbox_body", match_body)
    return recorder


# --------------------------------------------------------------------------- what a miss differs in

# The fields of a chat-completions body in the order a reader cares about, and their names in words.
_FIELD_ORDER = ("model", "messages", "response_format", "tools", "tool_choice")
_FIELD_WORDS = {
    "model": "the model",
    "response_format": "the schema",
    "tools": "the tools",
    "tool_choice": "the tool choice",
    "max_tokens": "the token limit",
}
_ABSENT = object()


def _json_body(body: bytes | str | None) -> Any:
    canonical = _canonical_body(body)
    if canonical is None:
        return None
    try:
        return json.loads(canonical)
    except ValueError:
        return canonical


def _short(value: Any, limit: int = 60) -> str:
    if value is _ABSENT:
        return "absent"
    if not isinstance(value, str):
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= limit else text[: limit - 1] + "…"
    text = " ".join(value.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _text_difference(recorded: str, now: str, context: int = 24) -> str:
    """Where two texts part, with a little of each around that point."""
    at = next((i for i, (a, b) in enumerate(zip(recorded, now, strict=False)) if a != b), min(len(recorded), len(now)))
    start = max(0, at - context)

    def piece(text: str) -> str:
        chunk = " ".join(text[start : at + context].split())
        return repr(("…" if start else "") + chunk + ("…" if at + context < len(text) else ""))

    return f"from character {at}: recorded {piece(recorded)}, now {piece(now)}"


def _value_difference(recorded: Any, now: Any, path: str = "") -> str:
    """The first place two JSON values differ, as a path inside them and the two values there."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        for key in sorted(set(recorded) | set(now)):
            a, b = recorded.get(key, _ABSENT), now.get(key, _ABSENT)
            if a != b:
                return _value_difference(a, b, f"{path}.{key}" if path else key)
    if isinstance(recorded, list) and isinstance(now, list):
        for index, (a, b) in enumerate(zip(recorded, now, strict=False)):
            if a != b:
                return _value_difference(a, b, f"{path}[{index}]")
        return f"{path or 'the list'} has {len(recorded)} items recorded, {len(now)} now"
    if isinstance(recorded, str) and isinstance(now, str) and len(recorded) + len(now) > 80:
        return f"{path + ' ' if path else ''}{_text_difference(recorded, now)}"
    where = f"at {path}: " if path else ""
    return f"{where}recorded {_short(recorded)}, now {_short(now)}"


def _message_words(index: int, message: Any) -> str:
    role = message.get("role") if isinstance(message, dict) else None
    if index == 0 and role == "system":
        return "the system prompt"
    if not role:
        return "a message"
    return f"{'an' if role[0] in 'aeiou' else 'a'} {role} message"


def body_difference(recorded: bytes | str | None, now: bytes | str | None) -> str | None:
    """The first field in which two request bodies differ, named in words; None when they match.

    ``model``, then ``messages`` (``messages[0]``: the system prompt; ``messages[k]``: the k-th
    message, with where its text parts), then ``response_format`` (the schema), then every other field
    (temperature, seed, ...) in name order."""
    a, b = _json_body(recorded), _json_body(now)
    if a == b:
        return None
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"the body: {_value_difference(a, b)}"
    for key in [*_FIELD_ORDER, *sorted((set(a) | set(b)) - set(_FIELD_ORDER))]:
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va == vb:
            continue
        if key == "messages" and isinstance(va, list) and isinstance(vb, list):
            for index, (ma, mb) in enumerate(zip(va, vb, strict=False)):
                if ma != mb:
                    inner = ma.get("content") if isinstance(ma, dict) else ma
                    outer = mb.get("content") if isinstance(mb, dict) else mb
                    if isinstance(inner, str) and isinstance(outer, str) and inner != outer:
                        detail = _value_difference(inner, outer)
                    else:
                        detail = _value_difference(ma, mb)
                    return f"messages[{index}] ({_message_words(index, mb)}): {detail}"
            return f"messages (the conversation): {len(va)} messages recorded, {len(vb)} now"
        words = _FIELD_WORDS.get(key)
        name = f"{key} ({words})" if words else key
        if va is _ABSENT or vb is _ABSENT:
            return f"{name}: recorded {_short(va)}, now {_short(vb)}"
        return f"{name}: {_value_difference(va, vb)}"
    return "the body"  # unreachable: unequal dicts differ in some key


def _nearness(recorded: Request, request: Request) -> tuple[int, int]:
    """How alike two requests are: same endpoint first, then how many body fields (each message one)
    are equal."""
    same_endpoint = (
        recorded.method == request.method
        and recorded.path == request.path
        and (recorded.host == request.host or (_is_loopback(recorded.host) and _is_loopback(request.host)))
    )
    a, b = _json_body(recorded.body), _json_body(request.body)
    equal = 0
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
            if key == "messages" and isinstance(va, list) and isinstance(vb, list):
                equal += sum(1 for x, y in zip(va, vb, strict=False) if x == y) + (len(va) == len(vb))
            else:
                equal += va == vb
    else:
        equal = int(a == b)
    return int(same_endpoint), equal


MATCHERS = [vcr.matchers.method, match_host, match_port, vcr.matchers.path, vcr.matchers.query, match_body]


def matches(recorded: Request, request: Request) -> bool:
    """Whether a replay would answer ``request`` with ``recorded`` (the matchers of :func:`make_vcr`)."""
    return vcr.matchers.requests_match(request, recorded, MATCHERS)


@dataclass(frozen=True)
class Miss:
    """A request a replayed cassette did not hold, and the recording nearest to it."""

    cassette: str
    request: str  # "POST http://127.0.0.1:8080/v1/chat/completions"
    recorded: int  # interactions in the cassette
    nearest: int | None = None  # its index, when the cassette holds a request to the same endpoint
    differs: str | None = None  # the first differing field, in words
    test: str | None = None  # the pytest node id that made the request, when one did

    def line(self) -> str:
        """One line: the cassette, the request, the nearest recording and what differs."""
        head = f"{self.cassette}: no recorded interaction matches {self.request}"
        if self.nearest is None:
            return f"{head} (the cassette holds {self.recorded} interactions, none to that endpoint)"
        what = self.differs or "nothing in the body: it was already played (the test sent it more often)"
        return f"{head}; the nearest, interaction {self.nearest + 1} of {self.recorded}, differs in {what}"


MISSES: list[Miss] = []  # every miss of this process, in order; readers remember where they started


def describe_miss(cassette_path: str, recorded: list[Request], request: Request) -> Miss:
    """The miss of ``request`` against the ``recorded`` requests: which is nearest, and how it differs."""
    scored = [(_nearness(r, request), i) for i, r in enumerate(recorded)]
    best = max(scored, key=lambda item: (item[0], -item[1]), default=None)
    nearest = best[1] if best is not None and best[0][0] else None
    differs = body_difference(recorded[nearest].body, request.body) if nearest is not None else None
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0] or None
    return Miss(str(cassette_path), f"{request.method} {request.uri}", len(recorded), nearest, differs, test)


def note_miss(miss: Miss) -> Miss:
    MISSES.append(miss)
    return miss


def miss_from_exception(exc: BaseException) -> Miss | None:
    """The :class:`Miss` behind vcrpy's exception for a request it could not play (noted once)."""
    held = getattr(exc, "sandbox_miss", None)
    if held is not None:
        return held
    cassette, request = getattr(exc, "cassette", None), getattr(exc, "failed_request", None)
    if cassette is None or request is None:
        return None
    miss = note_miss(describe_miss(str(cassette.path), list(cassette.requests), request))
    exc.sandbox_miss = miss  # type: ignore[attr-defined]
    return miss


# --------------------------------------------------------------------------- the check's collecting replay


@dataclass
class _Collector:
    """A replay that answers a miss with the nearest unplayed recording (vcrpy applies
    ``before_record_request`` to each request before matching it, so the request is swapped there).

    vcrpy hands over a copy of the request on each of its calls, so a request is known by its content:
    one whose stand-in is still unplayed is the same request asked about again."""

    path: str
    cassette: Any = None  # set once the cassette is loaded (loading passes every recording through here)
    swapped: dict[tuple[str, str, str | None], int] = field(default_factory=dict)

    def __call__(self, request: Request) -> Request:
        request = _scrub_request(request)
        cassette = self.cassette
        if cassette is None:
            return request
        recorded = cassette.requests
        key = (request.method, request.uri, _canonical_body(request.body))
        held = self.swapped.get(key)
        if held is not None and not cassette.play_counts[held]:
            return recorded[held]
        unplayed = [i for i in range(len(recorded)) if not cassette.play_counts[i]]
        if any(matches(recorded[i], request) for i in unplayed):
            return request
        note_miss(describe_miss(self.path, recorded, request))
        candidates = [i for i in unplayed if recorded[i].method == request.method and recorded[i].path == request.path]
        if not candidates:
            return request  # nothing left to answer with: vcrpy raises, as in a strict replay
        pick = max(candidates, key=lambda i: (_nearness(recorded[i], request), -i))
        self.swapped[key] = pick
        return recorded[pick]


def _log_check(folder: Path, path: Path, cassette: Any, misses: list[Miss]) -> None:
    played = sorted(i for i, count in cassette.play_counts.items() if count)
    line = {
        "cassette": str(path.resolve()),
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0] or None,
        "interactions": len(cassette.requests),
        "played": played,
        "misses": [asdict(m) for m in misses],
    }
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"reads-{os.getpid()}.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


@contextlib.contextmanager
def use_cassette(path: Path | str, record_mode: RecordMode = "none") -> Iterator[Any]:
    """Replay (default) or record the model traffic inside the block to ``path``."""
    path = Path(path)
    if record_mode == "none" and not path.exists():
        raise FileNotFoundError(f"cassette {path} does not exist; record it with {RECORD_ENV}=1")
    check = os.environ.get(CHECK_ENV) if record_mode == "none" else None
    collector = _Collector(str(path)) if check else None
    recorder = make_vcr(path.parent, record_mode, collector or _scrub_request)
    first = len(MISSES)
    with recorder.use_cassette(path.name) as cassette:
        if collector is not None:
            collector.cassette = cassette
        try:
            yield cassette
        finally:
            if check:
                mine = [m for m in MISSES[first:] if m.cassette == str(path)]
                _log_check(Path(check), path, cassette, mine)


# --------------------------------------------------------------------------- cassette files


def read_cassette(path: Path | str) -> tuple[list[Request], list[dict[str, Any]], dict[str, Any]]:
    """A cassette file's requests, responses and metadata, as vcrpy stores them."""
    from vcr.persisters.filesystem import FilesystemPersister
    from vcr.serializers import yamlserializer

    requests, responses, *metadata = FilesystemPersister.load_cassette(str(path), yamlserializer)
    return list(requests), list(responses), (metadata[0] if metadata else {})


def write_cassette(
    path: Path | str, requests: list[Request], responses: list[dict[str, Any]], metadata: dict[str, Any]
) -> None:
    """Write a cassette file in vcrpy's format (what it reads back, metadata included)."""
    from vcr.persisters.filesystem import FilesystemPersister
    from vcr.serializers import yamlserializer

    data = {"requests": requests, "responses": responses, "metadata": metadata}
    FilesystemPersister.save_cassette(str(path), data, yamlserializer)
