"""The pytest plugin for projects built on the sandbox, and `sandbox cassettes check` / `prune`.

A small outside project (made with pytester) sends its own agent's requests to a loopback fake
provider under the ``sandbox_cassette`` marker: recorded once, replayed offline, made stale by a
prompt edit (the miss names the field), checked, pruned and recorded again with its key scrubbed.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sandbox.cassette_check import check
from sandbox.cassettes import body_difference, read_cassette, use_cassette, write_cassette
from sandbox.cli import app
from sandbox.models import CassetteMissError, complete
from sandbox.models.endpoint import Endpoint
from tests.fake_provider import FakeProvider, Reply

pytest_plugins = ["pytester"]

SYSTEM = "You are Jordan, a patient salesperson. Ask one question at a time."
KEY = "agent-test-key-not-real-0042"


def body(system: str = SYSTEM, *later: dict[str, str], **fields: object) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hello"}, *later]
    return json.dumps({"model": "agent-model", "messages": messages, "temperature": 0.7, "seed": 1} | fields)


def test_the_first_differing_field_is_named_in_words():
    assert body_difference(body(), body()) is None
    assert body_difference(body(), json.dumps(json.loads(body()), indent=2)) is None  # JSON, not text
    prompt = body_difference(body(), body(SYSTEM.replace("one question", "two questions")))
    assert prompt.startswith("messages[0] (the system prompt): from character 43: recorded '")
    assert "one question" in prompt and "two questions" in prompt
    reply = {"role": "assistant", "content": "Hi"}
    later = body_difference(body(SYSTEM, reply), body(SYSTEM, reply | {"content": "Hello there"}))
    assert later == "messages[2] (an assistant message): recorded 'Hi', now 'Hello there'"
    assert body_difference(body(), body(SYSTEM, reply)) == "messages (the conversation): 2 messages recorded, 3 now"
    assert body_difference(body(), body(model="other")) == "model (the model): recorded 'agent-model', now 'other'"
    assert body_difference(body(), body(seed=2)) == "seed: recorded 1, now 2"
    schema = {"type": "json_schema", "json_schema": {"schema": {"properties": {"price": {"type": "number"}}}}}
    changed = json.loads(json.dumps(schema))
    changed["json_schema"]["schema"]["properties"]["price"]["type"] = "integer"
    differs = body_difference(body(response_format=schema), body(response_format=changed))
    assert differs == (
        "response_format (the schema): at json_schema.schema.properties.price.type: recorded 'number', now 'integer'"
    )
    assert body_difference(body(), body(max_tokens=5)) == "max_tokens (the token limit): recorded absent, now 5"


async def test_a_miss_names_the_cassette_the_request_and_the_nearest_recording(tmp_path, fast_retries):
    path = tmp_path / "agent.yaml"
    greeting = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello"}]
    with FakeProvider([Reply(content="Hi")]) as provider, use_cassette(path, "once"):
        endpoint = Endpoint(model="openai/agent-model", api_base=provider.api_base, api_key=KEY, transport="openai")
        await complete(endpoint, greeting, purpose="rep:turn")
        await complete(endpoint, [*greeting, {"role": "user", "content": "And the price?"}], purpose="rep:turn")
    edited = [{"role": "system", "content": SYSTEM + " Be brief."}, greeting[1]]
    with use_cassette(path, "none"), pytest.raises(CassetteMissError) as exc:
        await complete(endpoint, edited, purpose="rep:turn")
    assert exc.value.calls[0].attempts == 1
    reason = exc.value.reason
    assert f"{path}: no recorded interaction matches POST http://127.0.0.1:" in reason
    assert "the nearest, interaction 1 of 2, differs in messages[0] (the system prompt)" in reason
    assert "Be brief" in reason


AGENT_TEST = '''
import os
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent


@pytest.mark.sandbox_cassette
def test_agent():
    """Our own agent's requests: as many as count.txt says, with the system prompt in prompt.txt."""
    base = os.environ.get("AGENT_API_BASE", "http://127.0.0.1:9/v1")  # replay: nothing listens there
    system = (HERE / "prompt.txt").read_text()
    for i in range(int((HERE / "count.txt").read_text())):
        question = f"question {i}, asked with {os.environ['AGENT_API_KEY']}"
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        reply = httpx.post(
            f"{base}/chat/completions",
            json={"model": "agent-model", "messages": messages},
            headers={"Authorization": "Bearer " + os.environ["AGENT_API_KEY"]},
        )
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "fine"
'''


@pytest.fixture
def project(pytester, monkeypatch):
    """An outside project: one test of its own agent, replayed from cassettes/test_agent/test_agent.yaml."""
    monkeypatch.setenv("AGENT_API_KEY", KEY)
    monkeypatch.delenv("SANDBOX_RECORD", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_agent=AGENT_TEST)
    (pytester.path / "prompt.txt").write_text(SYSTEM)
    (pytester.path / "count.txt").write_text("2")
    return pytester


def record(project, monkeypatch) -> None:
    with FakeProvider([Reply(content="fine")]) as provider:
        monkeypatch.setenv("AGENT_API_BASE", provider.api_base)
        project.runpytest("-p", "no:cacheprovider", "--sandbox-record").assert_outcomes(passed=1)
        assert len(provider.requests) == 2
    monkeypatch.delenv("AGENT_API_BASE")


def test_record_replay_stale_check_prune_and_record_again(project, monkeypatch):
    cassette = project.path / "cassettes" / "test_agent" / "test_agent.yaml"
    record(project, monkeypatch)
    text = cassette.read_text()
    assert KEY not in text and "REDACTED" in text  # header and body both scrubbed
    requests, _, metadata = read_cassette(cassette)
    assert len(requests) == 2
    assert metadata["recorded_by"] == {"test": "test_agent.py::test_agent", "rootdir": "../.."}

    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)  # offline: nothing listens

    (project.path / "prompt.txt").write_text(SYSTEM.replace("one question", "two questions"))
    failed = project.runpytest("-p", "no:cacheprovider")
    failed.assert_outcomes(failed=1)
    miss = (
        f"cassette miss: {cassette}: no recorded interaction matches POST http://127.0.0.1:9/v1/chat/completions; "
        "the nearest, interaction 1 of 2, differs in messages[0] (the system prompt): from character 43: "
        "recorded '…atient salesperson. Ask one question at a time.', now '…atient salesperson. Ask two questions"
    )
    assert miss in failed.stdout.str() and "Can't play back" not in failed.stdout.str()

    # A second cassette whose test is gone, for `check` to call unused and `prune` to remove.
    orphan = cassette.with_name("test_gone.yaml")
    requests, responses, metadata = read_cassette(cassette)
    write_cassette(
        orphan, requests, responses, {"recorded_by": {"test": "test_agent.py::test_gone", "rootdir": "../.."}}
    )
    result = CliRunner().invoke(app, ["cassettes", "check", str(project.path / "cassettes")])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"stale     {cassette}: messages[0] (the system prompt): from character 43:")
    assert "2 request(s) not recorded; test test_agent.py::test_agent" in lines[0]
    assert lines[1] == f"unused    {orphan}: its test test_agent.py::test_gone no longer exists"
    assert lines[2] == "1 stale, 1 unused"

    (project.path / "prompt.txt").write_text(SYSTEM)
    (project.path / "count.txt").write_text("1")  # the test now reads one of the two interactions
    result = CliRunner().invoke(app, ["cassettes", "prune", str(project.path / "cassettes")])
    assert result.exit_code == 0, result.output
    assert f"pruned    {cassette}: removed 1 interaction(s) no test reads" in result.output
    assert f"removed   {orphan} (nothing reads it)" in result.output
    assert not orphan.exists() and len(read_cassette(cassette)[0]) == 1
    assert [v.line() for v in check(project.path / "cassettes")] == [
        f"fresh     {cassette}: all 1 interactions read (test test_agent.py::test_agent)"
    ]

    (project.path / "count.txt").write_text("2")
    record(project, monkeypatch)  # re-recorded from scratch: both requests, the key scrubbed again
    text = cassette.read_text()
    assert KEY not in text and text.count("REDACTED") >= 4
    assert len(read_cassette(cassette)[0]) == 2 and not cassette.with_name("test_agent.yaml.previous").exists()
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_missing_cassette_says_how_to_record_it(project):
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*cassettes/test_agent/test_agent.yaml does not exist: record it with `pytest --sandbox-record`*"]
    )


OUTCOMES_TEST = """
import os

import httpx
import pytest


def ask():
    base = os.environ.get("AGENT_API_BASE", "http://127.0.0.1:9/v1")
    reply = httpx.post(f"{base}/chat/completions", json={"model": "agent-model", "messages": [{"role": "user"}]})
    assert reply.status_code == 200


class TestA:
    @pytest.mark.sandbox_cassette
    def test_x(self):
        ask()


class TestB:
    @pytest.mark.sandbox_cassette
    def test_x(self):
        ask()


def test_fails_after_one(sandbox_cassette):
    with sandbox_cassette.replay():
        ask()
    assert os.environ.get("AGENT_API_BASE"), "fails in replay, after its first cassette"
    with sandbox_cassette.replay():
        ask()


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


@pytest.mark.slow
def test_deselected():
    pass


def test_reads_nothing():
    pass
"""


def test_only_a_passing_test_that_reads_nothing_makes_its_cassette_unused(pytester, monkeypatch):
    """Classes' same-named tests get a cassette each; a skipped, deselected or early-failing test's
    cassette is unchecked (kept by prune), and only a passing test's unread one is unused (removed)."""
    monkeypatch.delenv("SANDBOX_RECORD", raising=False)
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers = slow\naddopts = -m 'not slow'\n"
    )
    pytester.makepyfile(test_c=OUTCOMES_TEST)
    with FakeProvider([Reply(content="fine")]) as provider:
        monkeypatch.setenv("AGENT_API_BASE", provider.api_base)
        pytester.runpytest("-p", "no:cacheprovider", "--sandbox-record").assert_outcomes(
            passed=4, skipped=1, deselected=1
        )
    monkeypatch.delenv("AGENT_API_BASE")
    folder = pytester.path / "cassettes" / "test_c"
    for name in ("TestA.test_x", "TestB.test_x"):
        assert read_cassette(folder / f"{name}.yaml")[2]["recorded_by"]["test"] == f"test_c.py::{name[:5]}::test_x"
    requests, responses, _ = read_cassette(folder / "TestA.test_x.yaml")
    for name in ("test_skipped", "test_deselected", "test_reads_nothing"):
        noted = {"recorded_by": {"test": f"test_c.py::{name}", "rootdir": "../.."}}
        write_cassette(folder / f"{name}.yaml", requests, responses, noted)

    result = CliRunner().invoke(app, ["cassettes", "check", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"fresh     {folder}/TestA.test_x.yaml: all 1 interactions read (test test_c.py::TestA::test_x)",
        f"fresh     {folder}/TestB.test_x.yaml: all 1 interactions read (test test_c.py::TestB::test_x)",
        f"unchecked {folder}/test_deselected.yaml: its test test_c.py::test_deselected was deselected "
        "(-m or -k in the project's options)",
        f"unchecked {folder}/test_fails_after_one-2.yaml: its test test_c.py::test_fails_after_one failed "
        "before reading it",
        f"fresh     {folder}/test_fails_after_one.yaml: all 1 interactions read (test "
        "test_c.py::test_fails_after_one, which failed)",
        f"unused    {folder}/test_reads_nothing.yaml: test_c.py::test_reads_nothing passed without reading it",
        f"unchecked {folder}/test_skipped.yaml: its test test_c.py::test_skipped was skipped",
        "3 fresh, 1 unused, 3 unchecked",
    ]
    result = CliRunner().invoke(app, ["cassettes", "prune", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"removed   {folder}/test_reads_nothing.yaml (nothing reads it)" in result.output
    assert f"kept      {folder}/test_skipped.yaml: its test test_c.py::test_skipped was skipped" in result.output
    left = sorted(p.name for p in folder.iterdir())
    assert left == [
        "TestA.test_x.yaml",
        "TestB.test_x.yaml",
        "test_deselected.yaml",
        "test_fails_after_one-2.yaml",
        "test_fails_after_one.yaml",
        "test_skipped.yaml",
    ]
