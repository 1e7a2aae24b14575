"""The pieces the benchmarks stand on: the fake provider's latency model and its own accounting of
time spent answering, and the store's off-loop writer keeping every line whole and in order."""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request

import pytest

from sandbox.results import EpisodeResult
from sandbox.schemas import EpisodeSpec
from sandbox.store import RunStore, read_results
from tests.fake_provider import FakeProvider, Reply


def test_latency_is_delay_plus_generation_time_and_jitter_keeps_the_mean():
    reply = Reply(delay_s=0.1, tokens_per_s=100, completion_tokens=50)
    assert reply.latency() == pytest.approx(0.6)
    jittered = Reply(delay_s=0.5, jitter=0.4)
    rng = random.Random(1)
    draws = [jittered.latency(rng) for _ in range(4000)]
    assert min(draws) >= 0.3 and max(draws) <= 0.7
    assert sum(draws) / len(draws) == pytest.approx(0.5, abs=0.01)
    assert len({round(d, 6) for d in draws}) > 1000  # really drawn, not one value


def test_provider_reports_requests_served_and_time_spent_answering():
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with FakeProvider([Reply(content="ok", delay_s=0.05)], keep_requests=False) as provider:
        started = time.time()
        for _ in range(3):
            request = urllib.request.Request(
                provider.api_base + "/chat/completions", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read())["usage"]["completion_tokens"] == 7
        base = provider.api_base.removesuffix("/v1")
        with urllib.request.urlopen(base + "/stats", timeout=10) as response:
            stats = json.loads(response.read())
    assert stats["served"] == 3
    assert 0.15 <= stats["handling_s"] < 1.0
    assert started <= stats["first_at"] <= stats["last_at"]
    assert provider.requests == []  # keep_requests=False: a long benchmark holds nothing per request


def result(i: int) -> EpisodeResult:
    spec = EpisodeSpec(strategy="s", prospect="p", scenario="c", seed=i)
    return EpisodeResult(run_id="r", episode_id=spec.episode_id, spec=spec, status="ok", error="x" * (i * 97))


def test_off_loop_appends_stay_whole_and_in_order(tmp_path):
    async def write_all(store: RunStore) -> None:
        for i in range(60):  # the runner awaits each append: order is completion order
            await store.append_async(result(i))
        await asyncio.gather(*(store.append_async(result(i)) for i in range(60, 200)))

    with RunStore(tmp_path / "run") as store:
        asyncio.run(write_all(store))
    seeds = [r.spec.seed for r in read_results(tmp_path / "run")]
    assert seeds[:60] == list(range(60))
    assert sorted(seeds) == list(range(200))
    lines = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["run_id"] == "r" for line in lines)


def test_append_outside_the_with_block_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        store.append(result(1))
