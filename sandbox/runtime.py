"""The models a command needs, made ready: the embedded server started only when some role uses it
(and not when a cassette replays its traffic), the cassette entered, every profile resolved once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from sandbox.profiles import EMBEDDED_SLOTS, Profiles, needs_embedded_server
from sandbox.schemas import ModelSettings

# Any loopback address works on replay: the cassette matcher ignores loopback host and port.
REPLAY_API_BASE = "http://127.0.0.1:8080/v1"


@contextlib.contextmanager
def model_runtime(
    settings: Iterable[ModelSettings],
    cassette: Path | None = None,
    record: bool = False,
    slots: int = EMBEDDED_SLOTS,
) -> Iterator[Profiles]:
    """Raises :class:`sandbox.local_server.LocalModelError` if the embedded model cannot start and
    ``FileNotFoundError`` for a cassette to replay that does not exist, each with a one-line message."""
    settings = list(settings)
    needs_server = needs_embedded_server(settings)
    with contextlib.ExitStack() as stack:
        api_base = REPLAY_API_BASE if needs_server else None
        if needs_server and (cassette is None or record):  # before the cassette: health checks unrecorded
            from sandbox.local_server import serve_local_model

            api_base = stack.enter_context(serve_local_model(parallel=slots)).api_base
        if cassette is not None:
            from sandbox.cassettes import use_cassette

            stack.enter_context(use_cassette(cassette, "once" if record else "none"))
        yield Profiles(settings, embedded_api_base=api_base, embedded_slots=slots)
