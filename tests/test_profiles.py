"""Model profiles: what each kind of endpoint can do is decided once, and self-hosted servers given by
``api_base`` get structured output under names litellm has never heard of."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.experiment import ExperimentSpec
from sandbox.local_server import LOCAL_MODEL_NAME
from sandbox.profiles import PLACEHOLDER_KEY, ProfileError, Profiles, resolve
from sandbox.runner import run
from sandbox.schemas import ModelSettings
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict

SERVER = "http://127.0.0.1:8000/v1"
UNKNOWN = "openai/qwen2.5-7b-instruct"  # a self-hosted open model under a name litellm does not know


def test_the_embedded_model_is_one_profile_among_others():
    embedded = resolve(ModelSettings(), "http://127.0.0.1:5000/v1", embedded_slots=3)
    assert embedded.embedded and embedded.endpoint.model == f"openai/{LOCAL_MODEL_NAME}"
    assert (embedded.turn_mode, embedded.evidence_mode, embedded.endpoint.structured) == (
        "two-call",
        "constrained",
        "json_schema",
    )
    assert embedded.endpoint.strict_schema and embedded.max_in_flight == 3 and embedded.judge_concurrency == 1
    assert embedded.sampling()["frequency_penalty"] == 0.5  # the 135M model loops without it
    with pytest.raises(ProfileError, match="embedded server"):
        resolve(ModelSettings())


def test_hosted_models_ask_litellm_and_servers_get_json_schema(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    hosted = resolve(ModelSettings(model="openai/gpt-4o-mini"))
    assert hosted.endpoint.structured == "json_schema" and not hosted.endpoint.strict_schema
    assert hosted.endpoint.api_key is None  # keys: the environment only, read by litellm
    assert (hosted.turn_mode, hosted.evidence_mode, hosted.embedded) == ("one-call", "free", False)
    assert resolve(ModelSettings(model="openai/no-such-model-anywhere")).endpoint.structured == "none"
    server = resolve(ModelSettings(model=UNKNOWN, api_base=SERVER))
    assert server.endpoint.structured == "json_schema" and server.endpoint.api_base == SERVER
    bare = resolve(ModelSettings(model="my-model", api_base=SERVER))
    assert bare.endpoint.model == "openai/my-model"


def test_structured_mode_is_a_setting_that_wins_over_auto():
    for mode in ("json_schema", "json_object", "none"):
        assert resolve(ModelSettings(model=UNKNOWN, api_base=SERVER, structured=mode)).endpoint.structured == mode
    assert resolve(ModelSettings(structured="none"), SERVER).endpoint.structured == "none"


def test_a_server_needs_no_key_whatever_the_prefix(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for model in ("my-model", "openai/my-model"):
        assert resolve(ModelSettings(model=model, api_base=SERVER)).endpoint.api_key == PLACEHOLDER_KEY
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-from-the-environment")
    assert resolve(ModelSettings(model="openai/my-model", api_base=SERVER)).endpoint.api_key is None


def test_profiles_resolve_once_per_settings():
    profiles = Profiles([ModelSettings(model=UNKNOWN, api_base=SERVER)])
    settings = ModelSettings(model=UNKNOWN, api_base=SERVER)
    assert profiles[settings] is profiles[settings] and len(profiles.all()) == 1


def constrained_only(payload: dict[str, Any]) -> Reply:
    """A server like vLLM or llama.cpp: JSON when a schema constrains it, prose otherwise."""
    response_format = payload.get("response_format") or {}
    if response_format.get("type") == "json_schema" and response_format.get("json_schema", {}).get("schema"):
        return Reply(content=json.dumps(accept_and_verdict()))
    return Reply(content="Sure! That sounds great, I am happy to move forward with the plan we discussed.")


@pytest.mark.parametrize(("structured", "ok"), [("auto", True), ("none", False)])
def test_a_self_hosted_server_under_an_unknown_name_gets_structured_output(
    tmp_path, catalog, monkeypatch, fast_retries, structured, ok
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeProvider(constrained_only) as provider:
        model = {"model": UNKNOWN, "api_base": provider.api_base, "structured": structured}
        spec = ExperimentSpec(
            id="self-hosted",
            strategies=["eager-to-please", "assertive-consultant"],
            prospects=["price-haggler"],
            scenarios=["saas-seats"],
            seeds=2,
            max_turns=4,
            models={"rep": model, "prospect": model, "judge": model},
        )
        summary = run(spec, catalog, folder=tmp_path / "run", report=False).summary
    print(f"\nstructured: {structured}: episodes ok {summary.ok}, failed {summary.failed} {summary.failures_by_reason}")
    if ok:
        assert (summary.ok, summary.failed) == (4, 0)
    else:
        assert (summary.ok, summary.failed) == (0, 4)
        assert summary.failures_by_reason == {"returned invalid": 4}
