"""Model layer: retries, failures, structured output, cassettes. Offline: a loopback fake or a cassette."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest
from pydantic import BaseModel

from sandbox.agents import ExtractedAction
from sandbox.cassettes import match_host, match_port, use_cassette
from sandbox.models import (
    CassetteMissError,
    Endpoint,
    ModelCallError,
    StructuredOutputError,
    complete,
    complete_structured,
    is_transient,
    retry_after_seconds,
)
from sandbox.profiles import resolve
from sandbox.prompts import extraction_prompt
from sandbox.runtime import REPLAY_API_BASE
from sandbox.schemas import ModelSettings
from tests.conftest import cassette, recording
from tests.fake_provider import FakeProvider, Reply

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(params=["openai", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every call-level test runs on both transports: the openai SDK and litellm."""
    return request.param


def fake(api_base: str, transport: str, model: str = "openai/fake-model") -> Endpoint:
    return Endpoint(model=model, api_base=api_base, api_key="sk-test-fake", transport=transport)


async def test_server_error_then_success_replays_from_cassette(fast_retries, transport):
    """Recorded once against the fake provider; replayed here with no server at all."""
    with cassette("provider-500-then-200.yaml"):
        if recording():
            with FakeProvider([Reply(status=500), Reply(content="hello after a retry")]) as provider:
                result = await complete(fake(provider.api_base, transport), HELLO, purpose="t", seed=1)
        else:
            result = await complete(fake("http://127.0.0.1:9/v1", transport), HELLO, purpose="t", seed=1)
    assert result.text == "hello after a retry"
    assert result.call.attempts == 2
    assert result.call.tokens_in == 11 and result.call.tokens_out == 7


async def test_rate_limit_waits_for_retry_after(fast_retries, monkeypatch, transport):
    from sandbox.models import retry

    monkeypatch.setattr(
        retry, "RETRY_POLICY_FACTORY", lambda: retry.retry_policy(initial_wait=0.01, retry_after_cap=5.0)
    )
    with FakeProvider([Reply(status=429, headers={"Retry-After": "0.3"}), Reply(content="ok")]) as provider:
        started = time.perf_counter()
        result = await complete(fake(provider.api_base, transport), HELLO, purpose="t")
        elapsed = time.perf_counter() - started
    assert result.call.attempts == 2
    assert elapsed >= 0.3  # the exponential fallback would have waited ~0.01 s


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_permanent_errors_are_not_retried(fast_retries, status, transport):
    with FakeProvider([Reply(status=status)]) as provider:
        with pytest.raises(ModelCallError) as exc:
            await complete(fake(provider.api_base, transport), HELLO, purpose="t")
        assert len(provider.requests) == 1
    assert exc.value.calls[0].attempts == 1
    assert exc.value.calls[0].error
    assert "\n" not in exc.value.reason


async def test_retries_are_bounded(fast_retries, transport):
    with FakeProvider([Reply(status=503)]) as provider:
        with pytest.raises(ModelCallError) as exc:
            await complete(fake(provider.api_base, transport), HELLO, purpose="t")
        assert len(provider.requests) == 4
    assert "after 4 attempt(s)" in exc.value.reason


async def test_empty_choice_list_is_retried_then_a_recorded_failure(fast_retries, transport):
    usage = {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}
    body = json.dumps(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [], "usage": usage}
    )
    with FakeProvider([Reply(raw_body=body), Reply(content="second time lucky")]) as provider:
        result = await complete(fake(provider.api_base, transport), HELLO, purpose="t")
    assert result.text == "second time lucky" and result.call.attempts == 2
    with FakeProvider([Reply(raw_body=body)]) as provider, pytest.raises(ModelCallError) as exc:
        await complete(fake(provider.api_base, transport), HELLO, purpose="t")
    assert "no choices" in exc.value.reason and exc.value.calls[0].attempts == 4


async def test_cassette_miss_fails_at_once_naming_cassette_and_request(tmp_path, fast_retries, transport):
    empty = tmp_path / "empty.yaml"
    empty.write_text("interactions: []\nversion: 1\n")
    with use_cassette(empty, "none"):
        started = time.perf_counter()
        with pytest.raises(CassetteMissError) as exc:
            await complete(fake("http://127.0.0.1:9/v1", transport), HELLO, purpose="t")
    assert time.perf_counter() - started < 5
    assert exc.value.calls[0].attempts == 1
    assert "empty.yaml" in exc.value.reason and "/v1/chat/completions" in exc.value.reason


async def test_cost_is_computed_where_litellms_price_table_knows_the_price(fast_retries, transport):
    with FakeProvider([Reply(content="hi")]) as provider:
        known = await complete(fake(provider.api_base, transport, "openai/gpt-4o-mini"), HELLO, purpose="t")
        unknown = await complete(fake(provider.api_base, transport), HELLO, purpose="t")
    assert known.call.cost_usd is not None and known.call.cost_usd > 0
    assert unknown.call.cost_usd is None
    assert unknown.call.tokens_in == 11


class Verdict(BaseModel):
    action: str
    price: float | None


async def test_structured_output_repairs_once(fast_retries, transport):
    with FakeProvider([Reply(content="sure! {not json"), Reply(content='{"action": "offer", "price": 21000}')]) as p:
        verdict, calls = await complete_structured(fake(p.api_base, transport), HELLO, Verdict, purpose="x")
        repair_prompt = p.requests[1]["messages"][-1]["content"]
    assert verdict == Verdict(action="offer", price=21000)
    assert len(calls) == 2 and calls[0].error and calls[1].error is None
    assert "not valid" in repair_prompt


async def test_structured_output_junk_twice_is_a_failure(fast_retries, transport):
    with FakeProvider([Reply(content="junk")]) as p, pytest.raises(StructuredOutputError) as exc:
        await complete_structured(fake(p.api_base, transport), HELLO, Verdict, purpose="x")
    assert len(exc.value.calls) == 2 and "twice" in exc.value.reason


async def test_a_repair_that_fails_keeps_the_first_call(fast_retries, transport):
    """The first answer's tokens and retries were spent: a failed repair must not drop them."""
    script = [Reply(status=500), Reply(content="junk"), Reply(status=500)]
    with FakeProvider(script) as p, pytest.raises(ModelCallError) as exc:
        await complete_structured(fake(p.api_base, transport), HELLO, Verdict, purpose="x")
    first, repair = exc.value.calls
    assert first.purpose == "x" and first.attempts == 2 and first.error.startswith("invalid output")
    assert repair.purpose == "x:repair" and repair.attempts > 1 and "500" in repair.error


async def test_structured_extraction_on_the_embedded_model_replays(no_local_server, transport):
    """One grammar-constrained call recorded from llama.cpp: valid JSON for the schema."""
    from sandbox.local_server import serve_local_model

    prompt = extraction_prompt("rep", "I can do 21,000 USD if you sign for two years.", None, "USD")
    messages = [{"role": "user", "content": prompt}]
    settings = ModelSettings(transport="auto" if transport == "openai" else "litellm")
    endpoint = resolve(settings, REPLAY_API_BASE).endpoint
    assert endpoint.transport == transport
    if recording():
        with serve_local_model(parallel=1) as server, cassette("structured-extract.yaml") as recorded:
            endpoint = resolve(settings, server.api_base).endpoint
            result, calls = await complete_structured(endpoint, messages, ExtractedAction, purpose="x", seed=1)
    else:
        with cassette("structured-extract.yaml") as recorded:
            result, calls = await complete_structured(endpoint, messages, ExtractedAction, purpose="x", seed=1)
    assert isinstance(result, ExtractedAction)
    assert result.action == "offer" and result.price == 21000
    assert len(calls) == 1 and calls[0].tokens_out > 0
    assert b'"json_schema"' in recorded.requests[0].body


async def test_keys_never_reach_a_cassette(tmp_path, monkeypatch, fast_retries, transport):
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("SANDBOX_FAKE_API_KEY", key)
    path = tmp_path / "secret.yaml"
    with FakeProvider([Reply(content=f"echo {key}")]) as provider, use_cassette(path, "once"):
        endpoint = Endpoint(model="openai/fake", api_base=provider.api_base, api_key=key, transport=transport)
        messages = [{"role": "user", "content": f"my key is {key}"}]
        await complete(endpoint, messages, purpose="t")
        assert provider.headers and key in provider.headers[0].get("Authorization", "")
    text = path.read_text()
    assert key not in text
    assert "REDACTED" in text


def test_transient_classification():
    """litellm's exception types (the SDK's own: tests/test_transport.py)."""
    import litellm  # here, not at the top: importing litellm costs every collecting worker about 8 s

    response = httpx.Response(429, headers={"retry-after": "7"}, request=httpx.Request("POST", "http://x"))
    rate = litellm.RateLimitError("slow down", llm_provider="openai", model="m", response=response)
    assert is_transient(rate) and retry_after_seconds(rate) == 7
    assert is_transient(litellm.Timeout("t", model="m", llm_provider="openai"))
    assert is_transient(litellm.InternalServerError("boom", llm_provider="openai", model="m"))
    assert not is_transient(litellm.AuthenticationError("no", llm_provider="openai", model="m"))
    assert not is_transient(litellm.BadRequestError("bad", model="m", llm_provider="openai"))
    miss = litellm.APIConnectionError("Can't overwrite existing cassette (x.yaml)", llm_provider="openai", model="m")
    assert not is_transient(miss)


def test_loopback_addresses_match_each_other_only():
    from vcr.request import Request

    def req(url):
        return Request("POST", url, b"{}", {})

    match_host(req("http://127.0.0.1:1234/v1"), req("http://localhost:9999/v1"))
    match_port(req("http://127.0.0.1:1234/v1"), req("http://localhost:9999/v1"))
    with pytest.raises(AssertionError):
        match_host(req("https://api.openai.com/v1"), req("http://127.0.0.1:1/v1"))
    with pytest.raises(AssertionError):
        match_port(req("https://example.com:443/v1"), req("https://example.com:8443/v1"))


async def test_hosted_models_get_the_schema_in_response_format_without_strict_mode(fast_retries, transport):
    import dataclasses

    hosted = resolve(ModelSettings(model="openai/gpt-4o-mini")).endpoint  # litellm knows it takes a schema
    with FakeProvider([Reply(content='{"action": "accept", "price": null}')]) as provider:
        endpoint = dataclasses.replace(hosted, api_base=provider.api_base, api_key="sk-test-fake", transport=transport)
        verdict, _ = await complete_structured(endpoint, HELLO, Verdict, purpose="x")
        response_format = provider.requests[0]["response_format"]
    assert verdict.action == "accept"
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is False
    assert response_format["json_schema"]["schema"]["properties"]["action"]["type"] == "string"
