"""A model on several deployments: two fake providers on loopback behind one model name, reached through
litellm's Router. Calls split across both, every request counted once; one killed mid-run, the run ends
on the other with every episode exactly once and the retries in the run log and in the counts."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from sandbox.catalog import describe_validation_error
from sandbox.experiment import ExperimentSpec
from sandbox.models import CALL_CONTEXT, CallContext, Completion, complete
from sandbox.models.transports import router_model_list, routing_strategy
from sandbox.profiles import each_server, resolve
from sandbox.runlog import LOG_FILE
from sandbox.runner import run
from sandbox.schemas import ModelSettings
from sandbox.store import read_results
from tests.fake_provider import FakeProvider, Reply, deal_or_walk

EXPECTED = {"price-haggler": "deal", "skeptic": "walk_away"}  # what deal_or_walk() scripts for each prospect
MODEL = "openai/qwen"


@pytest.fixture(autouse=True)
def fake_key(monkeypatch, fast_retries):
    monkeypatch.setenv("OPENAI_API_KEY", "test-router-not-a-real-key")


def routed_at(*bases: str) -> dict[str, Any]:
    return {"model": MODEL, "deployments": [{"api_base": base} for base in bases], "timeout_s": 2}


def routed(*providers: FakeProvider) -> dict[str, Any]:
    return routed_at(*(p.api_base for p in providers))


def spec_over(model: dict[str, Any], seeds: int) -> ExperimentSpec:
    return ExperimentSpec(
        id="router",
        strategies=["eager-to-please", "assertive-consultant"],
        prospects=["price-haggler", "skeptic"],
        scenarios=["saas-seats"],
        seeds=seeds,
        max_turns=2,
        models={"rep": model, "prospect": model},
        concurrency=4,
    )


def tally(plan, folder) -> dict[str, Any]:  # noqa: ANN001
    results = list(read_results(folder))
    ids = Counter(r.episode_id for r in results)
    planned = {e.episode_id for e in plan.planned}
    calls = [c for r in results if r.transcript for c in r.transcript.calls]
    return {
        "episodes": len(planned),
        "ok": sum(r.status == "ok" for r in results),
        "lost": len(planned - set(ids)),
        "duplicated": sum(n - 1 for n in ids.values()),
        "attempts": sum(c.attempts for c in calls),
        "retries": sum(c.attempts - 1 for c in calls),
        "misrecorded": sum(
            r.status == "ok" and r.transcript.outcome.status.value != EXPECTED[r.spec.prospect] for r in results
        ),
    }


def test_calls_split_across_both_deployments_each_request_counted_once(catalog, tmp_path):
    with FakeProvider(deal_or_walk()) as a, FakeProvider(deal_or_walk()) as b:
        outcome = run(spec_over(routed(a, b), seeds=3), catalog, folder=tmp_path / "run", report=False)
        served = {"a": a.served, "b": b.served}
        checks = (len(a.checks), len(b.checks))
    t = tally(outcome.plan, tmp_path / "run")
    print(f"\nper-deployment calls {served}; {t}")
    assert checks == (1, 1)  # the preflight checked each deployment
    assert t["ok"] == t["episodes"] == 12 and t["lost"] == t["duplicated"] == t["misrecorded"] == 0
    assert served["a"] > 0 and served["b"] > 0
    # No request of the Router's own: what the servers saw is what the run counted and the results hold.
    assert served["a"] + served["b"] == outcome.summary.calls_made == t["attempts"]
    assert outcome.summary.retries == t["retries"] == 0


def test_a_deployment_killed_mid_run_the_run_finishes_on_the_other(catalog, tmp_path):
    killed = threading.Event()
    script = deal_or_walk(latency_s=0.01)

    def dies_after_its_fifth(payload: dict[str, Any]) -> Reply:
        if b.served >= 5 and not killed.is_set():
            killed.set()  # stopped from another thread: its own loop is the one that stops
            threading.Thread(target=b.__exit__).start()
        return script(payload)

    with FakeProvider(script) as a:
        b = FakeProvider(dies_after_its_fifth).__enter__()
        outcome = run(spec_over(routed(a, b), seeds=4), catalog, folder=tmp_path / "run", report=False)
        served_by_a = a.served
    t = tally(outcome.plan, tmp_path / "run")
    log = (tmp_path / "run" / LOG_FILE).read_text()
    print(f"\nkilled after {b.served} calls; the other served {served_by_a}; {t}")
    assert killed.is_set() and 5 <= b.served < served_by_a
    assert t["ok"] == t["episodes"] == 16 and t["lost"] == t["duplicated"] == t["misrecorded"] == 0
    assert outcome.summary.retries == t["retries"] > 0  # live count == what the results file holds
    assert f"retry {MODEL} at {b.api_base} " in log  # each retry names the deployment that failed


class DictCache:
    """The response cache's two methods, in memory."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.items.get(key)

    def set(self, key: str, value: Any) -> None:
        self.items[key] = value


def test_a_model_with_no_deployment_left_falls_back_in_a_counted_logged_attempt(caplog):
    dead = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    with FakeProvider([Reply(content="from the fallback")]) as other:
        fallback = {"model": "openai/other", "api_base": other.api_base}
        settings = ModelSettings(model=MODEL, deployments=[{"api_base": dead}], fallbacks=[fallback])
        profile = resolve(settings)
        cache = DictCache()
        context = CallContext(cache=cache)

        async def call() -> Completion:
            CALL_CONTEXT.set(context)
            return await complete(profile.endpoint, [{"role": "user", "content": "hi"}], purpose="t")

        completion = asyncio.run(call())
        assert other.served == 1
    assert completion.text == "from the fallback" and completion.call.model == "openai/other"
    assert completion.call.attempts == 2  # the failed attempt on the model, then the fallback's
    assert (context.calls_made, context.retries) == (2, 1)  # counted as the results file counts it
    assert cache.items == {}  # another model's answer is not kept as this model's
    assert f"fallback {MODEL} -> openai/other (t) for attempt 2" in caplog.text
    assert [p.endpoint.api_base for p in each_server(profile)] == [dead, other.api_base]  # what the preflight checks


def test_a_failing_fallback_is_named_in_the_error_and_a_same_named_fallback_is_not_cached():
    dead, also_dead = "http://127.0.0.1:9/v1", "http://127.0.0.1:1/v1"
    five = [{"api_base": f"http://127.0.0.1:9/v{i}"} for i in range(5)]  # more deployments than attempts

    async def call(settings: ModelSettings, context: CallContext | None = None) -> Completion:
        if context is not None:
            CALL_CONTEXT.set(context)
        return await complete(resolve(settings).endpoint, [{"role": "user", "content": "hi"}], purpose="t")

    failing = ModelSettings(
        model=MODEL, deployments=[{"api_base": dead}], fallbacks=[{"model": "openai/b", "api_base": also_dead}]
    )
    with pytest.raises(Exception) as exc:
        asyncio.run(call(failing))
    assert f"at {also_dead}" in str(exc.value) and exc.value.calls[0].model == "openai/b"
    with FakeProvider([Reply(content="same name, other server")]) as other:
        # The fallback is the same model at another server: its answer is still not the model's own.
        same = ModelSettings(model=MODEL, deployments=five, fallbacks=[{"model": MODEL, "api_base": other.api_base}])
        cache = DictCache()
        completion = asyncio.run(call(same, CallContext(cache=cache)))
    assert completion.text == "same name, other server" and completion.fallback and cache.items == {}
    assert completion.call.attempts == 4  # three deployments tried, the fallback reached within the attempts
    with pytest.raises(Exception, match="fallback 0 \\(local\\)"):
        resolve(ModelSettings(model=MODEL, api_base=dead, fallbacks=["local"]))


def test_deployments_in_a_spec_are_validated_in_one_line_and_reach_the_router():
    settings = ModelSettings(
        model="hosted_vllm/qwen",
        deployments=[
            {"api_base": "http://10.0.0.1:8000/v1", "weight": 2, "rpm": 600},
            {"api_base": "http://10.0.0.2:11434/v1", "model": "qwen2.5:7b"},
        ],
    )
    model_list = router_model_list(resolve(settings).endpoint)
    assert [d["model_name"] for d in model_list] == ["hosted_vllm/qwen"] * 2
    assert model_list[0]["litellm_params"] | {"api_key": None} == {
        "model": "hosted_vllm/qwen",
        "api_base": "http://10.0.0.1:8000/v1",
        "api_key": None,
        "weight": 2.0,
        "rpm": 600,
    }
    assert model_list[1]["litellm_params"]["model"] == "hosted_vllm/qwen2.5:7b"
    assert routing_strategy(resolve(settings).endpoint) == "simple-shuffle"  # weights given: kept to
    assert routing_strategy(resolve(ModelSettings(**routed_at("http://a/v1", "http://b/v1"))).endpoint) == "least-busy"
    # Settings without deployments dump as before: episode ids and spec fingerprints do not change.
    assert set(ModelSettings(model=MODEL).model_dump(mode="json")).isdisjoint({"deployments", "fallbacks"})
    bad = [
        ({"api_base": "http://a/v1", "deployments": [{"api_base": "http://b/v1"}]}, "deployments", "not both"),
        ({"deployments": [{"api_base": "http://b/v1"}, {"api_base": "http://b/v1/"}]}, "deployments", "twice"),
        ({"deployments": [{"api_base": "http://b/v1", "weight": 0}]}, "deployments[0].weight", "greater than 0"),
        ({"fallbacks": [MODEL]}, "fallbacks", "the model itself"),
    ]
    for fields, where, words in bad:
        with pytest.raises(ValidationError) as exc:
            ModelSettings(model=MODEL, **fields)
        line = describe_validation_error("spec.yaml", exc.value)
        assert "\n" not in line and f"field '{where}'" in line and words in line


def test_models_check_sends_one_request_to_each_deployment():
    from typer.testing import CliRunner

    from sandbox.cli import app

    dead = "http://127.0.0.1:9/v1"
    with FakeProvider([Reply()]) as a, FakeProvider([Reply()]) as b:
        both = CliRunner().invoke(app, ["models", "check", MODEL, "--api-base", a.api_base, "--api-base", b.api_base])
        one_dead = CliRunner().invoke(app, ["models", "check", MODEL, "--api-base", a.api_base, "--api-base", dead])
        checks = (len(a.checks), len(b.checks))
    assert both.exit_code == 0 and f"at {a.api_base}" in both.output and f"at {b.api_base}" in both.output
    assert checks == (2, 1)
    assert one_dead.exit_code == 2 and f"at {a.api_base}" in one_dead.output
    assert f"{MODEL} at {dead} (check): connection refused" in one_dead.output


def test_a_cassette_recorded_through_the_router_replays_with_no_server(tmp_path):
    from sandbox.cassettes import use_cassette

    async def calls(settings: ModelSettings) -> list[str]:
        endpoint = resolve(settings).endpoint
        messages = [[{"role": "user", "content": f"hi {i}"}] for i in range(6)]
        return [(await complete(endpoint, m, purpose="t", seed=1)).text for m in messages]

    cassette = tmp_path / "router.yaml"
    with FakeProvider([Reply(content="from a")]) as a, FakeProvider([Reply(content="from b")]) as b:
        settings = ModelSettings(**routed(a, b))
        with use_cassette(cassette, "once"):
            recorded = asyncio.run(calls(settings))
    with use_cassette(cassette, "none"):  # both servers gone: loopback deployments match each other
        replayed = asyncio.run(calls(settings))
    assert replayed == recorded and set(recorded) <= {"from a", "from b"}
