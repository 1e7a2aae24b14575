"""Secrets: a run recorded through the real code paths with a fake key never writes the key anywhere."""

from __future__ import annotations

import json
import secrets

import yaml
from typer.testing import CliRunner

from sandbox.cli import app
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict

DEAL = accept_and_verdict()


def test_fake_key_reaches_no_file_log_or_cassette(tmp_path, monkeypatch):
    key = "sk-test-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(ROOT)
    cassette = tmp_path / "cassettes" / "secret-run.yaml"
    cassette.parent.mkdir()
    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider:
        model = {"model": "openai/gpt-4o-mini", "api_base": provider.api_base}
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
    scanned = [p for p in tmp_path.rglob("*") if p.is_file()]
    hits = [p for p in scanned if key.encode() in p.read_bytes()]
    print(f"\nscanned {len(scanned)} files (run folder, report, cassette) and the output for the key: {len(hits)} hits")
    assert hits == []
    assert key not in result.output
    assert "REDACTED" in cassette.read_text()
