"""Secrets: a run recorded through the real code paths with a fake key never writes the key anywhere."""

from __future__ import annotations

import json
import re
import secrets

import pytest
import yaml
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.redact import REDACTED, redact
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict

DEAL = accept_and_verdict()


def test_fake_key_reaches_no_file_log_or_cassette(tmp_path, monkeypatch, fast_retries):
    key = "sk-test-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("SANDBOX_LOG_LEVEL", "DEBUG")  # the most verbose log: provider libraries' dumps too
    monkeypatch.chdir(ROOT)
    cassette = tmp_path / "cassettes" / "secret-run.yaml"
    cassette.parent.mkdir()
    replies = [Reply(content=json.dumps(DEAL))]
    with FakeProvider(replies, faults=["500", "429"], fault_rate=0.3, seed=3) as provider:
        # through litellm, whose DEBUG dumps print the headers (the SDK's: tests/test_transport.py)
        model = {"model": "openai/gpt-4o-mini", "api_base": provider.api_base, "transport": "litellm"}
        spec = {
            "id": "secrets",
            "strategies": ["humble-equal"],
            "prospects": ["skeptic"],
            "scenarios": ["saas-seats"],
            "seeds": 2,
            "max_turns": 2,
            "models": {"rep": model, "prospect": model, "judge": model},
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        result = CliRunner().invoke(
            app,
            ["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--cassette", str(cassette), "--record"],
        )
        sent_headers = provider.headers
    assert result.exit_code == 0, result.output
    assert any(key in h.get("Authorization", "") for h in sent_headers)  # the key was really used
    (folder,) = (tmp_path / "runs").iterdir()
    assert CliRunner().invoke(app, ["report", str(folder)]).exit_code == 0
    log = (folder / "run.log").read_text()
    assert "episode " in log and "retry " in log and "LiteLLM" in log  # retries and provider debug lines logged
    assert "\x1b[" not in log  # litellm colours its request dumps; the file gets them as plain text
    # litellm "masks" the header in its dumps and keeps the key's last characters ('Be****xy'): none may survive.
    dumped = re.findall(r"(?i)authorization['\"]?:\s*['\"]?([^'\"\s]+(?: [^'\"\s]+)?)", log)
    assert dumped and set(dumped) <= {REDACTED, f"Bearer {REDACTED}"}, set(dumped)
    scanned = [p for p in tmp_path.rglob("*") if p.is_file()]
    hits = [p for p in scanned if key.encode() in p.read_bytes()]
    print(
        f"\nscanned {len(scanned)} files (run folder with its DEBUG run.log of {len(log.splitlines())} lines, report,"
        f" cassette) and the output for the key: {len(hits)} hits; {log.count('REDACTED')} redactions in the log"
    )
    assert hits == []
    assert key not in result.output
    assert "REDACTED" in cassette.read_text()


def test_run_log_redacts_keys_from_the_environment_and_key_shaped_strings(tmp_path, monkeypatch):
    import logging
    import logging.handlers

    from sandbox.runlog import run_log

    env_key = "plain-" + secrets.token_hex(12)  # no key shape: caught only because it sits in the environment
    shaped = "sk-proj-" + secrets.token_urlsafe(20)  # never in the environment: caught by its shape
    monkeypatch.setenv("ACME_API_KEY", env_key)
    with run_log(tmp_path) as path:
        logging.getLogger("sandbox").warning("calling with %s", env_key)
        logging.getLogger("LiteLLM").warning("headers: {'Authorization': 'Bearer %s'}", shaped)
        try:
            raise RuntimeError(f"provider said: bad key {shaped}")
        except RuntimeError:
            logging.getLogger("sandbox").exception("call failed")
    text = path.read_text()
    assert env_key not in text and shaped not in text
    assert text.count("REDACTED") == 3  # the message, the header, the exception text in the traceback
    assert not any(isinstance(h, logging.handlers.QueueHandler) for h in logging.getLogger("sandbox").handlers)


@pytest.mark.parametrize(
    "dump",
    [
        "headers: {'Authorization': 'Bearer sk-****{tail}'}",  # a masker that keeps four
        "-H 'Authorization: Be****{tail}' -H 'Content-Type: application/json'",  # litellm's curl dump keeps two
        '{"api-key": "ab****{tail}", "stream": false}',  # Azure's header, as JSON
        "x-api-key: an-****{tail}",  # Anthropic's
        "Proxy-Authorization: Basic dXNlcjpw****{tail}",
        "completion(model='gpt-4o', api_key='sk-pr****{tail}')",  # a keyword argument in a traceback
        "Incorrect API key provided: sk-proj-**************{tail}.",  # a provider's own error text
        "AIza****{tail} rejected",  # a masked Google key, no field name
    ],
)
def test_redact_removes_masked_key_remnants(dump: str) -> None:
    tail = "Zq9x"
    text = redact(dump.replace("{tail}", tail), secrets=[])
    assert tail not in text and "*" not in text
    assert REDACTED in text


def test_redact_keeps_text_that_holds_no_credential() -> None:
    text = "-H 'Content-Type: application/json' authorized: yes; the api keys are fine; 3 * 4 = 12"
    assert redact(text, secrets=[]) == text


def test_a_rejected_keys_remnant_in_an_error_body_never_reaches_the_failure_line():
    from sandbox.models.errors import ProviderStatusError, describe, is_transient

    body = b'{"error": {"message": "Incorrect API key provided: sk-proj-****abcd. You can find your key at ..."}}'
    line = describe(ProviderStatusError.of(401, body, {}))
    assert "abcd" not in line and "REDACTED" in line and line.startswith("AuthenticationError: Error code: 401")
    assert is_transient(ProviderStatusError.of(408, b"{}", {})) and is_transient(ProviderStatusError.of(409, b"", {}))
    assert not is_transient(ProviderStatusError.of(400, b"{}", {}))
