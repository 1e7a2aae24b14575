"""Two transports, one behaviour: the openai SDK for OpenAI and OpenAI-compatible endpoints, litellm for
the rest. Same request bodies (so cassettes replay under either), same errors, retries and records;
litellm's price table read without litellm; and a replay that never imports litellm at all."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from sandbox.models import Endpoint, complete, complete_structured, is_transient, retry_after_seconds
from sandbox.models.errors import ConfigurationError, configuration_problem
from sandbox.models.prices import cost_usd, litellm_knows_cost, litellm_supports_schema, price_table
from sandbox.models.transports import close_clients, http_session
from sandbox.profiles import resolve
from sandbox.runtime import REPLAY_API_BASE
from sandbox.schemas import ModelSettings
from tests.conftest import CASSETTES, ROOT
from tests.fake_provider import FakeProvider, Reply

HELLO = [{"role": "user", "content": "Say hello."}]


class Verdict(BaseModel):
    action: str
    price: float | None


def endpoint(api_base: str, transport: str, model: str = "openai/fake-model") -> Endpoint:
    return Endpoint(model=model, api_base=api_base, api_key="sk-test-fake", transport=transport)


# --------------------------------------------------------------------------- the profile chooses


@pytest.mark.parametrize(
    ("settings", "transport"),
    [
        (ModelSettings(model="openai/my-model", api_base="http://127.0.0.1:8000/v1"), "openai"),  # vLLM, llama.cpp
        (ModelSettings(model="my-model", api_base="http://127.0.0.1:11434/v1"), "openai"),  # Ollama's /v1
        (ModelSettings(model="hosted_vllm/qwen", api_base="http://127.0.0.1:8000/v1"), "openai"),
        (ModelSettings(model="lm_studio/qwen", api_base="http://127.0.0.1:1234/v1"), "openai"),
        (ModelSettings(model="openai/gpt-4o-mini"), "openai"),  # OpenAI itself
        (ModelSettings(model="anthropic/claude-3-5-haiku-latest"), "litellm"),
        (ModelSettings(model="gemini/gemini-1.5-flash"), "litellm"),
        (ModelSettings(model="lm_studio/qwen"), "litellm"),  # no api_base: litellm reads LM_STUDIO_API_BASE
        (ModelSettings(model="openai/my-model", api_base="http://127.0.0.1:8000/v1", transport="litellm"), "litellm"),
    ],
)
def test_the_profile_chooses_the_transport(settings, transport):
    assert resolve(settings).endpoint.transport == transport


def test_the_embedded_model_goes_through_the_sdk_and_has_no_price():
    profile = resolve(ModelSettings(), REPLAY_API_BASE)
    assert profile.endpoint.transport == "openai" and not profile.endpoint.priced
    assert resolve(ModelSettings(transport="litellm"), REPLAY_API_BASE).endpoint.transport == "litellm"


def test_the_transport_setting_is_left_out_of_dumps_at_its_default():
    """Episode ids and spec fingerprints hash these dumps: runs recorded before the field still resume."""
    assert "transport" not in ModelSettings(model="openai/x").model_dump()
    assert ModelSettings(model="openai/x", transport="litellm").model_dump()["transport"] == "litellm"


# --------------------------------------------------------------------------- same bodies, same records

REQUESTS: list[dict[str, Any]] = [
    {"temperature": 0.7, "max_tokens": 120, "seed": 1000, "extra": {"frequency_penalty": 0.5}},
    {"temperature": 0.0, "max_tokens": 40, "seed": 1, "response_format": {"type": "json_object"}},
    {
        "temperature": 0.7,
        "max_tokens": 120,
        "extra": {"presence_penalty": 0.1, "extra_body": {"dry_multiplier": 0.8, "dry_allowed_length": 3}},
    },
]


@pytest.mark.parametrize("options", REQUESTS)
async def test_both_transports_send_the_same_body(options, fast_retries):
    """So a cassette recorded through litellm replays through the SDK, and the other way round."""
    from sandbox.models.structured import json_schema_format

    schema = json_schema_format(Verdict, strict=True)  # as the embedded model gets it
    bodies, calls = {}, {}
    for transport in ("litellm", "openai"):
        with FakeProvider([Reply(content="hi")]) as provider:
            target = endpoint(provider.api_base, transport)
            completion = await complete(target, HELLO, purpose="t", **options)
            await complete(target, HELLO, purpose="t", response_format=schema, seed=2)
            bodies[transport], calls[transport] = provider.requests, completion
    assert bodies["openai"] == bodies["litellm"]
    assert bodies["openai"][0]["model"] == "fake-model"  # the provider prefix is routing, never sent
    assert "extra_body" not in bodies["openai"][0]  # server-specific fields merged into the body
    a, b = calls["litellm"], calls["openai"]
    assert a.text == b.text == "hi"
    assert (a.call.tokens_in, a.call.tokens_out, a.call.attempts) == (b.call.tokens_in, b.call.tokens_out, 1)


@pytest.mark.parametrize("transport", ["openai", "litellm"])
async def test_cost_from_the_price_table_on_both_transports(transport, fast_retries):
    with FakeProvider([Reply(content="hi")]) as provider:
        known = await complete(endpoint(provider.api_base, transport, "openai/gpt-4o-mini"), HELLO, purpose="t")
        unknown = await complete(endpoint(provider.api_base, transport), HELLO, purpose="t")
    price = price_table()["gpt-4o-mini"]
    expected = 11 * price["input_cost_per_token"] + 7 * price["output_cost_per_token"]
    assert known.call.cost_usd == pytest.approx(expected)
    assert unknown.call.cost_usd is None


@pytest.mark.parametrize("transport", ["openai", "litellm"])
async def test_structured_output_repairs_once_on_both_transports(transport, fast_retries):
    script = [Reply(status=503), Reply(content="sure! {not json"), Reply(content='{"action": "offer", "price": 1}')]
    with FakeProvider(script) as provider:
        verdict, calls = await complete_structured(endpoint(provider.api_base, transport), HELLO, Verdict, purpose="x")
    assert verdict == Verdict(action="offer", price=1)
    assert [c.attempts for c in calls] == [2, 1] and calls[0].error.startswith("invalid output")


@pytest.mark.parametrize("transport", ["openai", "litellm"])
async def test_a_refused_port_is_a_configuration_error_on_both_transports(transport, fast_retries):
    from sandbox.local_server import free_port

    base = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ConfigurationError) as exc:
        await complete(endpoint(base, transport), HELLO, purpose="t")
    assert "connection refused" in exc.value.reason and exc.value.calls[0].attempts == 1


@pytest.mark.parametrize("transport", ["openai", "litellm"])
async def test_a_missing_key_is_a_configuration_error_on_both_transports(transport, fast_retries, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    hosted = dataclasses.replace(resolve(ModelSettings(model="openai/gpt-4o-mini")).endpoint, transport=transport)
    with pytest.raises(ConfigurationError) as exc:
        await complete(hosted, HELLO, purpose="t")
    assert "no API key" in exc.value.reason


def status(code: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    """The SDK's own error for a status (litellm's are its subclasses)."""
    response = httpx.Response(code, headers=headers, request=httpx.Request("POST", "http://x/v1/chat/completions"))
    kind = {429: openai.RateLimitError, 401: openai.AuthenticationError, 404: openai.NotFoundError}.get(code)
    if kind is None:
        kind = openai.InternalServerError if code >= 500 else openai.BadRequestError
    return kind("m", response=response, body=None)


def test_the_wire_transports_errors_are_classified_as_the_sdks_and_litellms():
    """litellm raises its subclasses of the SDK's exceptions; the wire transport raises ProviderStatusError
    and aiohttp's own; all are read the same way."""
    import aiohttp

    from sandbox.models.errors import MissingKeyError, ProviderStatusError

    for code, transient in [(429, True), (500, True), (503, True), (400, False), (401, False), (404, False)]:
        error = ProviderStatusError.of(code, b'{"error": "x"}', {"Retry-After": "3"})
        assert is_transient(error) is transient and retry_after_seconds(error) == 3, code
        assert str(error) == f'Error code: {code} - {{"error": "x"}}'
        assert type(error).__name__ == type(status(code)).__name__  # the SDK's (and litellm's) names
    assert "credentials rejected" in configuration_problem(ProviderStatusError("x", 403))
    assert "not found" in configuration_problem(ProviderStatusError("x", 404))
    assert is_transient(TimeoutError()) and is_transient(aiohttp.ServerDisconnectedError())
    assert is_transient(aiohttp.ClientPayloadError("cut short"))
    assert not is_transient(aiohttp.InvalidURL("htp://x"))
    assert "no API key" in configuration_problem(MissingKeyError("no key is set for openai/x"))


def test_sdk_errors_are_classified_like_litellms():
    request = httpx.Request("POST", "http://x/v1/chat/completions")

    rate = status(429, {"retry-after": "7"})
    assert is_transient(rate) and retry_after_seconds(rate) == 7
    assert is_transient(status(500)) and is_transient(status(503))
    assert is_transient(openai.APITimeoutError(request=request))
    assert is_transient(openai.APIConnectionError(request=request))
    assert not is_transient(status(400)) and not is_transient(status(401)) and not is_transient(status(404))
    assert "credentials rejected" in configuration_problem(status(401))
    assert "not found" in configuration_problem(status(404))
    missing = openai.OpenAIError("The api_key client option must be set either by passing api_key to the client")
    assert "no API key" in configuration_problem(missing) and not is_transient(missing)


async def test_one_session_per_event_loop_closed_with_its_loop():
    session = await http_session()
    assert await http_session() is session and not session.closed

    def other_loop() -> Any:
        async def make() -> Any:
            return await http_session()

        return asyncio.run(make())  # asyncio.run finalises open async generators: the session is closed

    other = await asyncio.to_thread(other_loop)
    assert other is not session and other.closed
    await close_clients()
    assert session.closed and await http_session() is not session


# --------------------------------------------------------------------------- litellm's table, without litellm


SAMPLE = [
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "gpt-4o-mini",
    "openai/gpt-3.5-turbo",
    "anthropic/claude-3-5-haiku-20241022",
    "anthropic/claude-3-haiku-20240307",
    "gemini/gemini-1.5-flash",
    "mistral/mistral-small-latest",
    "groq/llama3-8b-8192",
    "openai/smollm2-135m-instruct",
    "openai/qwen2.5-7b-instruct",
    "hosted_vllm/qwen",
    "lm_studio/qwen",
    "fireworks_ai/some-model",
    "nosuchprovider/some-model",
]


def test_price_table_answers_as_litellm_does():
    """The same answers as litellm's own look-ups, on models it knows and models it does not."""
    import litellm

    for model in SAMPLE:
        assert litellm_supports_schema(model) == bool(litellm.supports_response_schema(model=model)), model
        try:
            info = litellm.get_model_info(model=model)
            knows = bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))
        except Exception:
            knows = False
        assert litellm_knows_cost(model) == knows, model
    usage = openai.types.CompletionUsage(prompt_tokens=1000, completion_tokens=200, total_tokens=1200)
    response = litellm.ModelResponse(model="gpt-4o-mini", usage=usage.model_dump())
    assert cost_usd("openai/gpt-4o-mini", usage) == pytest.approx(
        litellm.completion_cost(completion_response=response, model="gpt-4o-mini")
    )


# --------------------------------------------------------------------------- start-up


def test_a_replay_on_the_embedded_profile_never_imports_litellm(tmp_path):
    """`sandbox negotiate --cassette` replays its 12 recorded calls over aiohttp: neither litellm (about 4 s
    of import) nor the openai SDK (about 0.6 s) is loaded, nor litellm's price table read."""
    out = tmp_path / "t.json"
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', sorted(m for m in ('litellm', 'openai') if m in sys.modules)))\n"
        "import sandbox.models.prices as p\n"
        "atexit.register(lambda: print('TABLE', p.price_table.cache_info().currsize))\n"
        "from sandbox.cli import app\n"
        "app()\n"
    )
    args = ["negotiate", "--rep", "assertive-consultant", "--prospect", "price-haggler", "--scenario", "saas-seats"]
    args += ["--seed", "1", "--max-turns", "6", "--cassette", str(CASSETTES / "negotiate-assertive-haggler.yaml")]
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_RECORD"}
    completed = subprocess.run(
        [sys.executable, "-c", probe, *args, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "LOADED []" in completed.stdout and "TABLE 0" in completed.stdout
    assert len(json.loads(out.read_text())["turns"]) > 0


async def test_the_wire_transports_debug_lines_are_logged_without_the_key(tmp_path, monkeypatch, fast_retries):
    import secrets

    from sandbox.runlog import run_log

    key = "sk-test-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("SANDBOX_LOG_LEVEL", "DEBUG")
    target = Endpoint(model="openai/x", api_base="", api_key=key, transport="openai")
    with FakeProvider([Reply(status=500), Reply(content=f"echo {key}")]) as provider, run_log(tmp_path) as path:
        result = await complete(dataclasses.replace(target, api_base=provider.api_base), HELLO, purpose="t")
        sent = [h.get("Authorization", "") for h in provider.headers]
    log = path.read_text()
    assert result.call.attempts == 2 and all(key in h for h in sent)  # the key was really used, twice
    assert "retry openai/x (t) after attempt 1: InternalServerError: Error code: 500" in log
    assert key not in log


@pytest.mark.parametrize("transport", ["auto", "litellm"])
async def test_a_recorded_negotiation_replays_under_both_transports(transport, catalog, no_local_server):
    """negotiate-assertive-haggler.yaml was recorded through the wire transport; litellm's requests are
    the same, so it replays under either, turn for turn."""
    from sandbox.episode import play_episode
    from sandbox.runtime import model_runtime
    from sandbox.schemas import EpisodeSpec

    side = ModelSettings(transport=transport)
    spec = EpisodeSpec(
        strategy="assertive-consultant",
        prospect="price-haggler",
        scenario="saas-seats",
        seed=1,
        max_turns=6,
        opener="rep",
        rep_model=side,
        prospect_model=side,
    )
    with model_runtime([side], CASSETTES / "negotiate-assertive-haggler.yaml", slots=2) as profiles:
        assert profiles.get(side).endpoint.transport == ("openai" if transport == "auto" else "litellm")
        result = await play_episode("negotiate", spec, catalog, profiles, None, [])
    transcript = result.transcript
    assert transcript is not None and transcript.outcome.status.value != "failed", transcript.outcome.reason
    assert len(transcript.calls) == 12 and all(c.tokens_out > 0 for c in transcript.calls)
