"""`sandbox models check`: one constrained request says whether an endpoint does what its profile
claims; errors no retry can mend end at once, in one line naming the endpoint and what to change."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.local_server import free_port
from tests.fake_provider import FakeProvider, Reply

runner = CliRunner()
UNKNOWN = "openai/qwen2.5-7b-instruct"


def schema_server(payload: dict[str, Any]) -> Reply:
    """Like vLLM or llama.cpp: the requested JSON when a schema constrains it, prose otherwise."""
    if (payload.get("response_format") or {}).get("type") == "json_schema":
        return Reply(content=json.dumps({"status": "ready", "count": 3}))
    return Reply(content="Ready when you are!")


def check(*args: str) -> Any:
    return runner.invoke(app, ["models", "check", *args])


def test_a_server_that_honours_json_schema_passes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a self-hosted server needs none
    with FakeProvider(schema_server, answer_checks=False) as provider:
        result = check(UNKNOWN, "--api-base", provider.api_base)
        sent = provider.requests[0]
    assert result.exit_code == 0, result.output
    assert "structured output (json_schema) honoured: yes" in result.output
    assert "tokens/s:" in result.output and "cost known: no" in result.output
    assert f"api_base: {provider.api_base}" in result.output and "structured: json_schema" in result.output
    assert sent["response_format"]["type"] == "json_schema" and len(provider.requests) == 1


def test_a_server_that_ignores_the_schema_is_told_apart(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeProvider(schema_server, answer_checks=False) as provider:
        result = check(UNKNOWN, "--api-base", provider.api_base, "--structured", "none")
    assert result.exit_code == 1
    assert "structured output (none) honoured: no" in result.output and "Ready when you are!" in result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_a_refused_port_is_one_line_and_not_retried(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    base = f"http://127.0.0.1:{free_port()}/v1"
    result = check(UNKNOWN, "--api-base", base)
    line = one_error_line(result.output)
    print(f"\n{line}")
    assert result.exit_code == 2 and "connection refused" in line and base in line
    assert "failed after" not in line  # a configuration error ends at once, not after back-off


def test_a_missing_key_and_an_unknown_provider_say_what_to_change(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    missing = one_error_line(check("openai/gpt-4o-mini").output)
    unknown = one_error_line(check("nosuchprovider/some-model").output)
    print(f"\n{missing}\n{unknown}")
    assert "no API key" in missing and "OPENAI_API_KEY" in missing
    assert "unknown provider" in unknown and "provider/name" in unknown


def test_a_rejected_key_is_not_retried(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-rejected")
    with FakeProvider([Reply()], require_key="sk-test-the-right-one") as provider:
        result = check(UNKNOWN, "--api-base", provider.api_base)
        sent = provider.check_headers
    line = one_error_line(result.output)
    assert result.exit_code == 2 and "credentials rejected" in line and len(sent) == 1
    assert sent[0]["Authorization"] == "Bearer sk-test-rejected"  # the environment's key, not the placeholder


def test_a_model_the_server_does_not_serve_is_not_found_at_once(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeProvider([Reply()], served_models={"my-smollm"}) as provider:
        result = check("openai/no-such-model", "--api-base", provider.api_base)
        served = check("openai/my-smollm", "--api-base", provider.api_base)
        checks = len(provider.checks)
    line = one_error_line(result.output)
    print(f"\n{line}")
    assert result.exit_code == 2 and "not found: the server does not serve this model" in line
    assert provider.api_base in line and "openai/no-such-model" in line and "failed after" not in line
    assert served.exit_code == 0, served.output
    assert checks == 2  # one request each: the 404 was not retried
