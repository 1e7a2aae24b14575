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


def test_episode_ids_and_spec_fingerprints_stay_what_they_were(catalog):
    """Ids and fingerprints are hashes of the settings' dumps: a field added at its default (``structured``)
    must not change them, or old run folders could no longer resume."""
    from sandbox.content import CONTENT_ROOT
    from sandbox.experiment import load_experiment
    from sandbox.schemas import EpisodeSpec

    assert EpisodeSpec(strategy="a", prospect="b", scenario="c").episode_id == "543f5eb99c12216c"
    assert load_experiment(CONTENT_ROOT / "experiments" / "quickstart.yaml", catalog).fingerprint == "377c711f5fd8"
    chosen = ModelSettings(model=UNKNOWN, structured="none")
    assert ModelSettings.model_validate(chosen.model_dump()) == chosen  # a non-default value is kept


async def test_a_server_that_answered_and_then_refuses_is_retried(fast_retries, monkeypatch):
    """A refused connection is a configuration error only where nothing ever answered: a server
    that has answered and now refuses is restarting, so the call is retried."""
    from sandbox.models import ConfigurationError, ModelCallError, complete

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    hello = [{"role": "user", "content": "hi"}]
    with FakeProvider([Reply(content="hello")]) as provider:
        endpoint = resolve(ModelSettings(model=UNKNOWN, api_base=provider.api_base)).endpoint
        await complete(endpoint, hello, purpose="t")
    with pytest.raises(ModelCallError) as restarting:
        await complete(endpoint, hello, purpose="t")
    assert not isinstance(restarting.value, ConfigurationError) and restarting.value.calls[0].attempts == 4
    assert provider.api_base in restarting.value.reason
    from sandbox.local_server import free_port

    never = resolve(ModelSettings(model=UNKNOWN, api_base=f"http://127.0.0.1:{free_port()}/v1")).endpoint
    with pytest.raises(ConfigurationError) as refused:
        await complete(never, hello, purpose="t")
    assert refused.value.calls[0].attempts == 1 and "connection refused" in refused.value.reason


def test_resume_of_a_missing_folder_creates_nothing(tmp_path, catalog):
    from sandbox.runner import SpecMismatchError

    spec = ExperimentSpec(id="x", strategies=["eager-to-please"], prospects=["skeptic"], scenarios=["saas-seats"])
    missing = tmp_path / "runs" / "typo"
    with pytest.raises(SpecMismatchError, match="no such folder"):
        run(spec, catalog, resume=missing)
    assert not missing.exists()


async def test_a_bug_while_judging_is_a_recorded_failure_with_the_dialogue_kept(catalog, monkeypatch):
    from sandbox import episode
    from sandbox.judge import load_rubric
    from sandbox.schemas import EpisodeSpec

    async def broken_panel(*args: object, **kwargs: object) -> None:
        raise RuntimeError("judge exploded")

    monkeypatch.setattr(episode, "judge_panel", broken_panel)
    with FakeProvider([Reply(content=json.dumps(accept_and_verdict()))]) as provider:
        model = ModelSettings(model=UNKNOWN, api_base=provider.api_base)
        spec = EpisodeSpec(
            strategy="eager-to-please", prospect="price-haggler", scenario="saas-seats", rep_model=model,
            prospect_model=model, max_turns=2,
        )  # fmt: skip
        profiles = Profiles([model])
        result = await episode.play_episode("r", spec, catalog, profiles, load_rubric(), [model])
    assert result.status == "failed" and "judge exploded" in (result.error or "")
    assert result.transcript is not None and result.transcript.turns


@pytest.mark.parametrize("command", [["negotiate"], ["judge", "t.json"], ["models", "check", "local"]])
def test_a_bad_structured_value_is_refused_before_anything_runs(command):
    from typer.testing import CliRunner

    from sandbox.cli import app

    result = CliRunner().invoke(app, [*command, "--structured", "bogus"])
    assert result.exit_code == 2 and "bogus" in result.output and "Traceback" not in result.output


def test_openai_reasoning_models_go_through_litellm_which_knows_their_parameters():
    # o1 / o3 / gpt-5 take max_completion_tokens, not max_tokens: the wire transport sends what it is given
    assert resolve(ModelSettings(model="openai/o3-mini")).endpoint.transport == "litellm"
    assert resolve(ModelSettings(model="openai/gpt-4o-mini")).endpoint.transport == "openai"
    assert resolve(ModelSettings(model="openai/o3-mini", api_base=SERVER)).endpoint.transport == "openai"


def test_a_vllm_server_gets_its_own_key_never_the_openai_one(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key-from-the-environment")
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
    vllm = ModelSettings(model="hosted_vllm/qwen", api_base=SERVER)
    assert resolve(vllm).endpoint.api_key == PLACEHOLDER_KEY
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-started-with-api-key")
    assert resolve(vllm).endpoint.api_key == "vllm-started-with-api-key"
    assert resolve(ModelSettings(model="lm_studio/qwen", api_base=SERVER)).endpoint.api_key == PLACEHOLDER_KEY
