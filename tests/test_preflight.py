"""The preflight: before a run or a negotiation, each distinct model endpoint answers one check request
(the request of `sandbox models check`); one that fails stops everything before the first episode, in
one line per endpoint, with exit status 2 and no run folder. And a self-hosted server that needs no
key plays under `openai/NAME` with no key in the environment."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.local_server import free_port
from sandbox.preflight import PreflightError, require_ready
from sandbox.profiles import PLACEHOLDER_KEY
from sandbox.runfolder import RunFolder
from sandbox.schemas import ModelSettings
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict

cli = CliRunner()
SERVED = "my-smollm"


def smollm_server(payload: dict[str, Any]) -> Reply:
    """Like llama.cpp serving a small model: JSON only when a schema constrains it, plain words otherwise."""
    if (payload.get("response_format") or {}).get("type") == "json_schema":
        return Reply(content=json.dumps(accept_and_verdict()))
    rep = "a salesperson for" in str((payload.get("messages") or [{}])[0].get("content", ""))
    return Reply(content="Happy to help you get started today." if rep else "Fine, we accept.")


def write_spec(folder: Path, rep: dict, prospect: dict | None = None, judge: dict | None = None) -> Path:
    """2 strategies x 1 prospect x 1 scenario x 2 seeds: four episodes."""
    models = {"rep": rep, "prospect": prospect or rep} | ({"judge": judge} if judge else {})
    spec = {
        "id": "preflight",
        "strategies": ["eager-to-please", "assertive-consultant"],
        "prospects": ["price-haggler"],
        "scenarios": ["saas-seats"],
        "seeds": 2,
        "max_turns": 4,
        "models": models,
        "baseline": "eager-to-please",
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(spec: Path, runs: Path, *args: str) -> Any:
    return cli.invoke(app, ["run", str(spec), "--runs-dir", str(runs), "--no-cache", *args])


def error_lines(output: str) -> list[str]:
    return output.splitlines()  # a blank line counts too: the user sees exactly these


def refused_base() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_a_server_that_needs_no_key_plays_as_openai_name_with_no_key_set(tmp_path, no_key):
    with FakeProvider(smollm_server, served_models={SERVED}) as provider:
        rep = {"model": f"openai/{SERVED}", "api_base": provider.api_base, "turn_mode": "two-call"}
        spec = write_spec(tmp_path, rep, prospect=rep | {"temperature": 0.3})  # two settings, one endpoint
        result = run_cli(spec, tmp_path / "runs")
        keys = {h.get("Authorization") for h in provider.headers + provider.check_headers}
        checks, sent = len(provider.checks), [r["model"] for r in provider.requests]
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    statuses = [r.status for r in RunFolder(folder).latest()]
    print(f"\nepisodes: {statuses}; check requests: {checks}; episode requests: {len(sent)}; keys sent: {keys}")
    assert statuses == ["ok"] * 4
    assert checks == 1  # the one endpoint, checked once before the first episode
    assert keys == {f"Bearer {PLACEHOLDER_KEY}"}  # no key in the environment: the placeholder, never none
    assert sent and set(sent) == {SERVED}  # the server's own name, as it serves it


@pytest.mark.parametrize("prefix", ["openai/", "", "hosted_vllm/", "custom_openai/", "xinference/"])
def test_a_server_needs_no_key_whatever_the_prefix(no_key, monkeypatch, prefix):
    monkeypatch.delenv("XINFERENCE_API_KEY", raising=False)
    with FakeProvider(smollm_server) as provider:
        require_ready([ModelSettings(model=f"{prefix}{SERVED}", api_base=provider.api_base)])
        (sent,) = provider.check_headers
    assert sent["Authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_a_key_in_the_environment_is_used_at_a_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-from-env")
    monkeypatch.setenv("TOGETHERAI_API_KEY", "sk-test-together-from-env")  # litellm's own name for it
    with FakeProvider(smollm_server) as provider:
        for model in (f"openai/{SERVED}", f"together_ai/{SERVED}"):
            require_ready([ModelSettings(model=model, api_base=provider.api_base)])
        sent = [h["Authorization"] for h in provider.check_headers]
    assert sent == ["Bearer sk-test-openai-from-env", "Bearer sk-test-together-from-env"]


def test_a_server_that_rejects_the_key_stops_the_run_in_one_line(tmp_path, no_key, fast_retries, caplog):
    runs = tmp_path / "runs"
    with FakeProvider(smollm_server, require_key="sk-test-the-servers-own") as provider:
        result = run_cli(write_spec(tmp_path, {"model": f"openai/{SERVED}", "api_base": provider.api_base}), runs)
        checks, episode_requests = len(provider.checks), len(provider.requests)
    lines = error_lines(result.output)
    print(f"\n{result.output}")
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "credentials rejected" in lines[0] and provider.api_base in lines[0] and f"openai/{SERVED}" in lines[0]
    assert (checks, episode_requests) == (1, 0)  # one request, not retried; no episode started
    assert not runs.exists()  # nothing written
    assert not [r for r in caplog.records if r.name == "sandbox" and r.message.startswith("retry")]


def test_a_refused_port_stops_the_run_in_one_line(tmp_path, no_key, fast_retries, caplog):
    runs, base = tmp_path / "runs", refused_base()
    caplog.set_level(logging.WARNING, logger="sandbox")
    result = run_cli(write_spec(tmp_path, {"model": f"openai/{SERVED}", "api_base": base}), runs)
    lines = error_lines(result.output)
    print(f"\n{result.output}")
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "connection refused" in lines[0] and base in lines[0] and "failed after" not in lines[0]
    assert not runs.exists()
    assert not [r for r in caplog.records if r.message.startswith("retry")]  # ended at once, no back-off


def test_each_failing_endpoint_gets_its_line(tmp_path, no_key, fast_retries):
    runs, refused = tmp_path / "runs", refused_base()
    with (
        FakeProvider(smollm_server, served_models={SERVED}) as serving,
        FakeProvider(smollm_server, require_key="sk-test-the-servers-own") as locked,
    ):
        spec = write_spec(
            tmp_path,
            {"model": f"openai/{SERVED}", "api_base": refused},
            prospect={"model": "openai/no-such-model", "api_base": serving.api_base},
            judge={"model": f"openai/{SERVED}", "api_base": locked.api_base},
        )
        result = run_cli(spec, runs)
        checks = (len(serving.checks), len(locked.checks), len(serving.requests) + len(locked.requests))
    lines = error_lines(result.output)
    print(f"\n{result.output}")
    assert result.exit_code == 2 and len(lines) == 3, result.output
    (refused_line,) = [line for line in lines if refused in line]
    (missing_line,) = [line for line in lines if "openai/no-such-model" in line]
    (locked_line,) = [line for line in lines if locked.api_base in line]
    assert "connection refused" in refused_line and "credentials rejected" in locked_line
    assert "not found: the server does not serve this model" in missing_line
    assert checks == (1, 1, 0) and not runs.exists()


def test_no_preflight_runs_and_a_resume_that_fails_it_leaves_the_folder_as_it_was(tmp_path, no_key, fast_retries):
    runs, base = tmp_path / "runs", refused_base()
    spec = write_spec(tmp_path, {"model": f"openai/{SERVED}", "api_base": base})
    unchecked = run_cli(spec, runs, "--no-preflight")
    assert unchecked.exit_code == 0, unchecked.output
    (folder,) = runs.iterdir()
    results = list(RunFolder(folder).latest())
    assert len(results) == 4 and all(r.status == "failed" and "connection refused" in r.error for r in results)
    assert "(0 retries)" in unchecked.output  # a configuration error is never retried, in a run either
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    resumed = run_cli(spec, runs, "--resume", str(folder), "--retry-failed")
    assert resumed.exit_code == 2 and len(error_lines(resumed.output)) == 1, resumed.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # not a byte written


def test_a_structured_output_the_server_ignores_fails_the_preflight(no_key):
    with FakeProvider([Reply(content="Ready when you are!")], answer_checks=False) as provider:
        settings = ModelSettings(model=f"openai/{SERVED}", api_base=provider.api_base)
        with pytest.raises(PreflightError) as caught:
            require_ready([settings, settings.model_copy(update={"temperature": 0.1})])
    (line,) = caught.value.problems
    print(f"\n{line}")
    assert "structured output (json_schema) not honoured" in line and "structured: none" in line
    assert provider.api_base in line and len(provider.requests) == 1


def test_a_missing_key_fails_the_preflight_without_a_request(no_key):
    with pytest.raises(PreflightError) as caught:
        hosted = ModelSettings(model="openai/gpt-4o-mini")
        require_ready([hosted, hosted.model_copy(update={"temperature": 0.2})])
    (line,) = caught.value.problems
    print(f"\n{line}")
    assert "no API key" in line and "OPENAI_API_KEY" in line and "openai/gpt-4o-mini" in line


def test_an_unknown_provider_at_a_server_is_told_what_to_write(no_key):
    with FakeProvider([Reply()]) as provider:
        models = [ModelSettings(model=m, api_base=provider.api_base) for m in ("nosuchprovider/x", "openai_like/x")]
        with pytest.raises(PreflightError) as caught:
            require_ready(models)
    print("\n" + "\n".join(caught.value.problems))
    assert len(caught.value.problems) == 2 and provider.checks == [] and provider.requests == []
    for line in caught.value.problems:  # litellm says "not provided" for one, "unmapped" for the other
        assert "unknown provider" in line and "openai/NAME for an OpenAI-compatible api_base" in line
        assert "failed after" not in line


def test_a_replay_checks_nothing_and_the_embedded_model_is_not_checked(no_key):
    refused = ModelSettings(model=f"openai/{SERVED}", api_base=refused_base())
    require_ready([refused], cassette=Path("cassettes/any.yaml"), record=False)  # the cassette answers
    require_ready([ModelSettings(model="local")])  # started and health-checked by the sandbox itself
    with pytest.raises(PreflightError):
        require_ready([refused], cassette=Path("cassettes/new.yaml"), record=True)  # recording: a real server


def test_negotiate_checks_first(no_key, fast_retries):
    base = refused_base()
    refused = cli.invoke(app, ["negotiate", "--model", f"openai/{SERVED}", "--api-base", base, "--max-turns", "2"])
    lines = error_lines(refused.output)
    assert refused.exit_code == 2 and len(lines) == 1 and "connection refused" in lines[0], refused.output
    with FakeProvider(smollm_server) as provider:
        args = ["negotiate", "--model", f"openai/{SERVED}", "--api-base", provider.api_base, "--max-turns", "2"]
        checked = cli.invoke(app, args)
        after_check = len(provider.checks)
        unchecked = cli.invoke(app, [*args, "--no-preflight"])
        checks = len(provider.checks)
    assert checked.exit_code == 0 and unchecked.exit_code == 0, checked.output + unchecked.output
    assert (after_check, checks) == (1, 1)  # both sides share the endpoint: one check; none with --no-preflight


def test_a_finished_run_reopened_checks_nothing(tmp_path, no_key, fast_retries):
    """Re-opening a run with nothing left to do (to report again) calls no model, so a server that is
    down by then must not stop it."""
    runs, base = tmp_path / "runs", refused_base()
    spec = write_spec(tmp_path, {"model": f"openai/{SERVED}", "api_base": base})
    assert run_cli(spec, runs, "--no-preflight").exit_code == 0  # four episodes, all failed, all recorded
    (folder,) = runs.iterdir()
    reopened = run_cli(spec, runs, "--resume", str(folder))  # failed ones are not retried: nothing to do
    assert reopened.exit_code == 0, reopened.output
    assert "(preflight)" not in reopened.output and "0 to run" in reopened.output
