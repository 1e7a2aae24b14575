"""Two full negotiations recorded on the embedded model, replayed with no server and no network."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.metrics import outcome_metrics
from sandbox.schemas import OutcomeStatus, Transcript
from tests.conftest import CASSETTES, ROOT

runner = CliRunner()

EPISODES = [
    (
        "negotiate-assertive-haggler.yaml",
        ["--rep", "assertive-consultant", "--prospect", "price-haggler", "--scenario", "saas-seats", "--seed", "1"],
    ),
    (
        "negotiate-eager-king.yaml",
        [
            "--rep",
            "eager-to-please",
            "--prospect",
            "demanding-king",
            "--scenario",
            "consulting-engagement",
            "--opener",
            "prospect",
            "--seed",
            "2",
        ],
    ),
]


@pytest.mark.parametrize(("name", "args"), EPISODES)
def test_recorded_negotiation_replays_offline(name, args, tmp_path, no_local_server, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "t.json"
    handout = tmp_path / "handout.md"
    command = ["negotiate", *args, "--max-turns", "6", "--handout", str(handout)]
    command += ["--cassette", str(CASSETTES / name), "--out", str(out)]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    transcript = Transcript.model_validate_json(out.read_text())
    text = handout.read_text()
    assert "embedded 135M model" in text and transcript.turns[-1].message.strip().splitlines()[0] in text
    assert transcript.outcome.status is not OutcomeStatus.FAILED
    assert len(transcript.turns) >= 1
    assert all(turn.message.strip() for turn in transcript.turns)
    # two calls per turn on the embedded model: the message, then the action extraction
    assert [c.purpose.split(":")[1] for c in transcript.calls][:2] == ["message", "extract"]
    assert all(c.tokens_in > 0 and c.tokens_out > 0 for c in transcript.calls)
    metrics = outcome_metrics(transcript)
    assert metrics.turns == len(transcript.turns) and metrics.model_calls == len(transcript.calls)
    assert "outcome:" in result.output

    # Replaying again gives the same dialogue: the cassette, not chance, decides.
    again = tmp_path / "again.json"
    assert runner.invoke(app, command[:-1] + [str(again)]).exit_code == 0
    first = [t["message"] for t in json.loads(out.read_text())["turns"]]
    assert first == [t["message"] for t in json.loads(again.read_text())["turns"]]


def test_replay_with_changed_request_fails_as_a_recorded_cassette_miss(tmp_path, no_local_server, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "t.json"
    name, args = EPISODES[0]
    command = [
        "negotiate",
        *args[:-1],
        "99",
        "--max-turns",
        "6",
        "--cassette",
        str(CASSETTES / name),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    transcript = Transcript.model_validate_json(out.read_text())
    assert transcript.outcome.status is OutcomeStatus.FAILED
    assert "cassette miss" in transcript.outcome.reason and name in transcript.outcome.reason
    assert transcript.failed_turn_calls[0].attempts == 1


def test_cli_one_line_errors(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["negotiate", "--prospect", "nobody"])
    assert result.exit_code == 2
    assert "unknown prospect 'nobody'" in result.output
    result = runner.invoke(app, ["negotiate", "--cassette", "cassettes/missing.yaml"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_list_shows_content_with_sources(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for word in ("assertive-consultant", "humble-equal", "price-haggler", "saas-seats", "Mark Silver"):
        assert word in result.output


def test_negotiate_with_judge_against_an_openai_compatible_server(tmp_path, monkeypatch):
    """One-call turns and the judge, end to end through the CLI, against a loopback fake provider."""
    from sandbox.schemas import JudgePanel
    from tests.fake_provider import FakeProvider, Reply

    monkeypatch.chdir(ROOT)
    # One reply that is both a valid turn and a valid verdict (each schema ignores the other's keys).
    reply = {"message": "Fine, we accept.", "action": "accept", "price": None, "terms": None}
    # Both sides said it: turn 0 (the rep) evidences rep criteria, turn 1 (the prospect) prospect ones.
    evidence = [{"turn": 0, "quote": "Fine, we accept."}, {"turn": 1, "quote": "Fine, we accept."}]
    reply |= {"score": 4, "rationale": "Agrees plainly.", "evidence": evidence}
    out = tmp_path / "t.json"
    with FakeProvider([Reply(content=json.dumps(reply))]) as provider:
        result = runner.invoke(
            app,
            ["negotiate", "--model", "fake-model", "--api-base", provider.api_base, "--judge", "--out", str(out)]
            + ["--handout", str(tmp_path / "handout.md")],
        )
    assert result.exit_code == 0, result.output
    handout = (tmp_path / "handout.md").read_text()
    assert handout.startswith("# ") and "Generated with `sandbox negotiate`, seed 1." in handout
    assert '| discovery | fake-model | 4 | Agrees plainly. | [0] "Fine, we accept." |' in handout
    assert '| prospect-commitment | fake-model | 4 | Agrees plainly. | [1] "Fine, we accept." |' in handout
    assert "cited by the judge: discovery 4" in handout and "embedded 135M model" not in handout
    assert "| Outcome | deal at 24,000 USD, accepted by the prospect |" in handout
    transcript = Transcript.model_validate_json(out.read_text())
    assert transcript.outcome.status is OutcomeStatus.DEAL and transcript.outcome.price == 24000
    assert transcript.turns[0].notes  # the rep's accept had nothing to accept
    assert [c.purpose for c in transcript.calls] == ["rep:turn", "prospect:turn"]
    panel = JudgePanel.model_validate_json(out.with_suffix(".judgement.json").read_text())
    (judgement,) = panel.judgements
    assert len(judgement.scored) == 10 and judgement.unsupported == 0
    assert judgement.self_preference == ["rep", "prospect"]
    assert "self-preference risk" in result.output
