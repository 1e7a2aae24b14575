"""The run log: ``runs/<id>/run.log``, one line per event worth reading the morning after an overnight
run (start, each episode's end, every retry and why, budget stop, end), plus litellm's own warnings.

Every line passes through :func:`sandbox.redact.redact` before it reaches the file, so a key that a
provider library prints at DEBUG level never lands on disk; and it loses its ANSI colour codes (litellm
colours its request dumps for a terminal), so the file reads cleanly in an editor, ``less`` or ``grep``.
``SANDBOX_LOG_LEVEL=DEBUG`` makes the file verbose, litellm's request dumps included.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import re
from collections.abc import Iterator
from pathlib import Path

from sandbox.redact import redact, secret_values

LOG_FILE = "run.log"
LEVEL_ENV = "SANDBOX_LOG_LEVEL"
log = logging.getLogger("sandbox")
log.addHandler(logging.NullHandler())  # a library's convention: outside a run, nothing unredacted reaches stderr
# The provider libraries whose own records belong in the run log too (the Ray workers collect the same).
PROVIDER_LOGGERS = ["LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "openai"]
# ECMA-48 escape sequences: CSI (colours, cursor moves), OSC (titles, links) and the two-byte ones.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class RedactingFormatter(logging.Formatter):
    """Formats, then cleans the whole line (message, arguments and traceback alike): colour codes out
    first, so that none splits a key the redaction must recognise, then the credentials. A Ray worker
    uses it with ``fmt="%(message)s"`` to make its records plain before they travel to the driver."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)
        self._secrets = secret_values()

    def format(self, record: logging.LogRecord) -> str:
        return redact(strip_ansi(super().format(record)), self._secrets)


def log_level() -> int:
    """The run log's level: ``SANDBOX_LOG_LEVEL`` (a level's name), INFO when unset or unknown."""
    name = os.environ.get(LEVEL_ENV, "INFO").upper()
    return logging.getLevelNamesMapping().get(name, logging.INFO)


@contextlib.contextmanager
def run_log(folder: Path) -> Iterator[Path]:
    """Attach the run's log file for the duration of the run; detach (and close it) on any exit.

    Records are queued and written by a listener thread (stdlib ``QueueListener``), so the file's
    write and flush never hold up the event loop that every call in flight shares.
    """
    path = Path(folder) / LOG_FILE
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(RedactingFormatter())
    level = log_level()
    file_handler.setLevel(level)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = logging.handlers.QueueHandler(records)
    handler.setLevel(level)
    listener = logging.handlers.QueueListener(records, file_handler, respect_handler_level=True)
    providers = [logging.getLogger(name) for name in PROVIDER_LOGGERS]
    before = [(logger, logger.level) for logger in [log, *providers]]
    log.setLevel(level)
    log.addHandler(handler)
    for logger in providers:
        logger.addHandler(handler)
        if level <= logging.DEBUG:
            logger.setLevel(level)
    listener.start()
    try:
        yield path
    finally:
        for logger, old in before:
            logger.removeHandler(handler)
            logger.setLevel(old)
        listener.stop()  # writes what is still queued
        file_handler.close()
