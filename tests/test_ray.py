"""The Ray executor on a local Ray (2 CPUs, started once for the module) against the loopback fake provider:
the same results as the local executor, limits that hold across its workers, a SIGKILLed driver resumed
with every episode exactly once, and what it refuses, each in one line."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.experiment import expand, load_experiment
from sandbox.judge import DEFAULT_RUBRIC, load_rubric
from sandbox.ray_executor import Limiter, RayEpisodes, _Collect, ray_episodes
from sandbox.redact import REDACTED
from sandbox.runner import CallCounts, ExecutorError, run
from sandbox.store import read_results
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict, deal_or_walk, spec_file
from tests.test_experiment import SandboxProcess

cli = CliRunner()
TIMINGS = {"wall_time_s", "latency_s", "started_at", "finished_at"}  # all a result holds that a clock decides
DEAL = json.dumps(accept_and_verdict())


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for the module: its start-up (seconds on 2 cores) is paid once."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context
    ray.shutdown()


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def leaves(value: Any) -> int:
    """How many values a comparison of ``value`` compares (each scalar of the nested dump)."""
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(leaves(v) for v in value)
    return 1


def by_id(folder: Path) -> dict[str, dict[str, Any]]:
    return {r.episode_id: without_timings(r.model_dump(mode="json")) for r in read_results(folder)}


def test_local_and_ray_give_identical_results(tmp_path, local_ray, catalog):
    """16 judged episodes (2 strategies x 2 prospects x 2 seeds x both openers; one prospect walks away,
    the other deals) under each executor: the same ids, and every field of every result the same
    except the clock's (wall times, latencies, timestamps)."""
    rubric = load_rubric(DEFAULT_RUBRIC)
    with FakeProvider(deal_or_walk()) as provider:
        spec = load_experiment(spec_file(tmp_path, provider.api_base, openers="both"), catalog)
        outcomes = {
            executor: run(spec, catalog, rubric, folder=tmp_path / executor / "run", report=False, executor=executor)
            for executor in ("local", "ray")
        }
    local, on_ray = by_id(tmp_path / "local" / "run"), by_id(tmp_path / "ray" / "run")
    assert len(local) == 16 and local.keys() == on_ray.keys()
    outcomes_seen = Counter(r["transcript"]["outcome"]["status"] for r in local.values())
    assert outcomes_seen == {"deal": 8, "walk_away": 8} and all(r["judgements"] for r in local.values())
    for episode_id, result in local.items():
        assert on_ray[episode_id] == result, episode_id
    fields = sum(leaves(r) for r in local.values())
    a, b = outcomes["local"].summary, outcomes["ray"].summary
    assert (a.ok, a.calls_made, a.cost_usd) == (b.ok, b.calls_made, b.cost_usd) and b.calls_made > 0
    log = (tmp_path / "ray" / "run" / "run.log").read_text()
    assert "executor ray (2 workers on Ray on this machine)" in log and log.count(": ok, ") == 16
    print(
        f"\nlocal vs ray: {len(local)} episodes, {fields} fields compared ({fields // len(local)} per episode), equal"
    )


def test_caps_on_requests_at_once_hold_across_workers(tmp_path, local_ray, catalog):
    """max_in_flight 1 with 4 episodes at once on 2 workers: the provider never sees 2 requests at once
    (a cap per worker would let it see 2)."""
    model = {"model": "openai/gpt-4o-mini", "api_base": None}
    with FakeProvider([Reply(content=DEAL, delay_s=0.02)]) as provider:
        model["api_base"] = provider.api_base
        overrides = {
            "models": {"rep": model, "prospect": model},
            "rate_limits": {"openai/gpt-4o-mini": {"max_in_flight": 1}},
        }
        spec = load_experiment(spec_file(tmp_path, provider.api_base, seeds=1, **overrides), catalog)
        outcome = run(spec, catalog, folder=tmp_path / "run", report=False, executor="ray")
        assert outcome.summary.ok == 4 and provider.served >= 8
        assert provider.max_active == 1
    assert "one limiter actor" in (tmp_path / "run" / "run.log").read_text()


def test_the_cache_works_on_a_local_ray(tmp_path, local_ray, catalog):
    """The workers open the same cache folder: a second run sends nothing, and the hits counted in the
    workers reach the summary."""
    with FakeProvider([Reply(content=DEAL)]) as provider:
        spec = load_experiment(spec_file(tmp_path, provider.api_base, seeds=1), catalog)
        rubric = load_rubric(DEFAULT_RUBRIC)
        first = run(spec, catalog, rubric, folder=tmp_path / "a", cache_dir=tmp_path / "cache", executor="ray")
        sent = provider.served
        second = run(spec, catalog, rubric, folder=tmp_path / "b", cache_dir=tmp_path / "cache", executor="ray")
        assert provider.served == sent  # nothing new reached the provider
    # Episodes whose judge sees the same dialogue (the judge is blind to the strategy) may hit each other's
    # answers within the first run, as they would locally: hits plus sent requests are every call.
    asked = first.summary.calls_made + first.summary.cache_hits
    assert first.summary.calls_made == sent > 0 and asked == sum(len(r.calls) for r in read_results(tmp_path / "a"))
    assert second.summary.calls_made == 0 and second.summary.cache_hits == asked
    assert all(r.model_calls == 0 and r.cached_calls > 0 for r in read_results(tmp_path / "b"))


def test_a_lost_worker_s_episodes_are_played_by_the_other(tmp_path, local_ray, catalog):
    """One of the 2 workers is killed once 3 episodes have started, while it holds the only place of a
    max_in_flight 1 model: the other worker plays its episodes (the place given back), each written once."""
    from sandbox.ray_executor import worker_name

    started: list[str] = []

    def kill_one(episode: Any) -> None:
        started.append(episode.episode_id)
        if len(started) == 3:
            ray.kill(ray.get_actor(worker_name("run", 0)))

    model = {"model": "openai/gpt-4o-mini", "api_base": None}
    with FakeProvider([Reply(content=DEAL, delay_s=0.05)]) as provider:
        model["api_base"] = provider.api_base
        limits = {"openai/gpt-4o-mini": {"max_in_flight": 1}}
        path = spec_file(tmp_path, provider.api_base, models={"rep": model, "prospect": model}, rate_limits=limits)
        spec = load_experiment(path, catalog)
        outcome = run(spec, catalog, folder=tmp_path / "run", report=False, executor="ray", on_start=kill_one)
    ids = [r.episode_id for r in read_results(tmp_path / "run")]
    assert outcome.summary.ok == 8 and len(ids) == 8 == len(set(ids))
    log = (tmp_path / "run" / "run.log").read_text()
    assert "Ray worker 0 lost" in log and "1 left play its episodes" in log


class FakeWorker:
    """An actor handle's shape (``play.remote``, ``counts.remote``: awaitables) over plain coroutines: it
    plays an episode with 3 calls, 1 a retry, or dies (as Ray reports it) on one of ``poison``."""

    def __init__(self, poison: set[str]):
        self.poison, self.played = poison, []
        self.play, self.counts = SimpleNamespace(remote=self._play), SimpleNamespace(remote=self._counts)

    async def _play(self, episode: Any) -> tuple[str, list[Any], CallCounts]:
        self.played.append(episode.episode_id)
        if episode.episode_id in self.poison:
            raise ray.exceptions.RayActorError(error_msg="ActorDiedError: the worker was killed by the OOM killer")
        return f"result of {episode.episode_id}", [], CallCounts(calls_made=3, retries=1)

    async def _counts(self) -> CallCounts:
        return CallCounts(cache_hits=1)  # counted since its last result


def test_an_episode_that_kills_its_workers_is_replayed_once_then_failed_and_lost_counts_stay(tmp_path, catalog):
    """3 workers; the second episode kills whichever worker plays it: it kills 2 (the first and its one
    replay), not all 3, and fails with the reason; the third episode goes to the one left. The lost first
    worker's counts (its result's) are still in the summary's."""
    spec = load_experiment(spec_file(tmp_path, "http://127.0.0.1:9/v1"), catalog)
    fine, poison, after = expand(spec)[:3]
    workers = [FakeWorker({poison.episode_id}) for _ in range(3)]
    episodes = RayEpisodes(ray=ray, run_id="run", workers=workers)

    async def play_all() -> tuple[list[Any], CallCounts]:
        results = [await episodes.play(e) for e in (fine, poison, after)]
        return results, await episodes.counts()

    results, counts = asyncio.run(play_all())
    assert results[0] == f"result of {fine.episode_id}" and results[2] == f"result of {after.episode_id}"
    failed = results[1]
    assert (failed.status, failed.episode_id) == ("failed", poison.episode_id)
    assert "OOM killer" in failed.error and "not replayed" in failed.error
    assert [w.played for w in workers] == [
        [fine.episode_id, poison.episode_id],
        [poison.episode_id],
        [after.episode_id],
    ]
    assert episodes.lost == {0, 1}
    assert counts == CallCounts(calls_made=6, retries=2, cache_hits=1)  # worker 0's result, worker 2's and its rest


def test_a_place_a_lost_worker_still_waited_for_goes_back(tmp_path, catalog):
    """A cap of 1: the lost worker 0 holds the place and waits for another; forget gives the held one back,
    the waiting acquire then takes it and gives it straight back, so worker 1 still gets it."""
    spec = load_experiment(spec_file(tmp_path, "http://127.0.0.1:9/v1"), catalog)

    async def scenario() -> tuple[bool, int, bool, bool, bool]:
        limiter = Limiter(spec, {"m": 1})
        first = await limiter.acquire("m", 10, 0)
        queued = asyncio.ensure_future(limiter.acquire("m", 10, 0))
        await asyncio.sleep(0)  # it now waits for the place
        given_back = await limiter.forget(0)
        late = await queued
        free = not limiter.places["m"].locked()  # else the next acquire would wait for ever
        return first, given_back, late, free, free and await limiter.acquire("m", 10, 1)

    assert asyncio.run(scenario()) == (True, 1, False, True, True)


@pytest.mark.parametrize(
    ("address", "joined"),
    [(None, "local"), ("local", "local"), ("auto", "auto"), ("10.0.0.1:6379", "10.0.0.1:6379")],
)
def test_without_an_address_ray_starts_its_own_whatever_ray_address_says(monkeypatch, address, joined):
    """No --address (which check_runnable lets through as local) must not join RAY_ADDRESS's cluster or the
    last one started here: ray.init gets "local", which always starts a fresh Ray (Ray 2.60's worker.py
    reads RAY_ADDRESS only for None and "auto")."""
    asked: list[Any] = []

    def init(**kwargs: Any) -> None:
        asked.append(kwargs["address"])
        raise RuntimeError("stop here")

    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: asked.append("shutdown"))  # the module's Ray is left running
    with pytest.raises(RuntimeError, match="stop here"), ray_episodes(None, None, None, "run", [], None, None, address):
        pass  # ray.init is the first thing it does: the other arguments are never read
    assert asked == [joined]


def test_a_worker_s_records_travel_plain_and_redacted(monkeypatch):
    """What a worker sends the driver: no key (in the message, its arguments or the traceback, nor in the
    pickled record), no colour codes, the traceback kept as text."""
    key = "not-a-real-key-" + secrets.token_hex(8)
    monkeypatch.setenv("FAKE_PROVIDER_API_KEY", key)
    collect = _Collect(logging.INFO)
    try:
        raise ValueError(f"refused {key}")
    except ValueError:
        record = logging.LogRecord("LiteLLM", logging.WARNING, __file__, 1, "\x1b[31mretry %s\x1b[0m", (key,), None)
        record.exc_info = sys.exc_info()
    collect.handle(record)
    [sent] = collect.drain()
    assert sent.getMessage() == sent.msg and sent.args is None and sent.exc_info is None
    assert sent.msg.startswith(f"retry {REDACTED}") and "Traceback" in sent.msg and f"refused {REDACTED}" in sent.msg
    assert "\x1b" not in sent.msg and key.encode() not in pickle.dumps(sent)
    assert collect.drain() == []


def wait_for_lines(runs: Path, count: int, timeout: float = 90) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(runs.glob("*/episodes.jsonl")) if runs.exists() else []
        if found and len(found[0].read_text().splitlines()) >= count:
            return found[0].parent
        time.sleep(0.02)
    raise AssertionError(f"the run never wrote {count} episodes")


def test_sigkill_of_the_driver_then_resume_gives_every_episode_exactly_once(tmp_path, local_ray):
    """A ``sandbox run --executor ray --address`` driver of its own, joined to the module's Ray, is SIGKILLed
    once 5 of 16 episodes are on disk; ``--resume`` under the Ray executor finishes with each exactly once."""
    address = local_ray.address_info["gcs_address"]
    runs = tmp_path / "runs"
    with FakeProvider([Reply(content=DEAL, delay_s=0.05)]) as provider:
        path = spec_file(tmp_path, provider.api_base, concurrency=2, seeds=4)
        args = ["run", str(path), "--runs-dir", str(runs), "--no-cache", "--executor", "ray", "--address", address]
        driver = SandboxProcess(args, tmp_path)
        try:
            folder = wait_for_lines(runs, 5)
        finally:
            driver.kill()
        before = Counter(r.episode_id for r in read_results(folder))
        assert 5 <= sum(before.values()) < 16 and max(before.values()) == 1
        resumed = cli.invoke(app, ["run", str(path), "--resume", str(folder), "--no-cache", "--executor", "ray"])
    assert resumed.exit_code == 0, resumed.output
    counts = Counter(r.episode_id for r in read_results(folder))
    assert len(counts) == 16 and max(counts.values()) == 1
    assert f"{sum(before.values())} already finished" in resumed.output
    print(f"\nSIGKILL of the Ray driver after {sum(before.values())} episodes on disk; --resume: 16 ids, each once")


def refused(tmp_path: Path, *args: str, **overrides: Any) -> str:
    """The CLI's answer to a run it must refuse: exit 2, one error line, no run folder."""
    path = spec_file(tmp_path, "http://127.0.0.1:9/v1", **overrides)
    result = cli.invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and not (tmp_path / "runs").exists()
    return lines[0]


def test_what_the_ray_executor_refuses_is_one_line(tmp_path):
    cassette = refused(tmp_path, "--executor", "ray", "--cassette", str(tmp_path / "c.yaml"))
    assert "--executor local" in cassette and "vcrpy" in cassette
    cache = refused(tmp_path, "--executor", "ray", "--address", "10.0.0.1:6379")
    assert "--no-cache" in cache
    local = {"model": "local"}
    embedded = refused(tmp_path, "--executor", "ray", "--address", "auto", "--no-cache",
                       models={"rep": local, "prospect": local})  # fmt: skip
    assert "embedded model" in embedded and "api_base" in embedded
    assert "--executor ray" in refused(tmp_path, "--address", "auto")
    assert "unknown executor" in refused(tmp_path, "--executor", "dask")


def test_without_ray_the_executor_says_what_to_install(tmp_path, monkeypatch, catalog):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    line = refused(tmp_path, "--executor", "ray", "--no-cache")
    assert line == 'error: the Ray executor needs Ray, an optional extra: pip install -e ".[ray]"'
    with pytest.raises(ExecutorError, match=r"pip install -e \"\.\[ray\]\""):
        run(load_experiment(spec_file(tmp_path, "http://127.0.0.1:9/v1"), catalog), catalog, executor="ray")


def test_the_core_never_imports_ray():
    code = (
        "import sys, sandbox, sandbox.runner, sandbox.cli, sandbox.episode, sandbox.report;"
        "from typer.testing import CliRunner; CliRunner().invoke(sandbox.cli.app, ['run', '--help']);"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
