"""Experiment specs and the runner, against a loopback fake provider with known prices."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sandbox.catalog import CatalogError
from sandbox.cli import app
from sandbox.experiment import ExperimentSpec, expand, load_experiment
from sandbox.profiles import is_embedded
from sandbox.schemas import ModelSettings
from sandbox.store import RunLockedError, RunStore, latest_results, read_results
from tests.conftest import ROOT
from tests.fake_provider import FakeProvider, Reply, accept_and_verdict, spec_file

runner = CliRunner()

# One reply that is a valid one-call turn and a valid judge verdict: the prospect accepts list price.
DEAL = accept_and_verdict()


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-runner-not-a-real-key")
    monkeypatch.chdir(ROOT)


def run_cli(*args: str) -> object:
    return runner.invoke(app, ["run", *args])


# --------------------------------------------------------------------------- specs


def test_quickstart_and_realistic_specs_load(catalog):
    quick = load_experiment(ROOT / "experiments" / "quickstart.yaml", catalog)
    assert all(is_embedded(m) for m in quick.all_models())
    big = load_experiment(ROOT / "experiments" / "strategies-gpt4o-mini.yaml", catalog)
    assert len(expand(big)) == 7 * 6 * 3 * 5 * 2


def test_grid_is_paired_and_ids_are_stable():
    spec = ExperimentSpec(
        id="x",
        strategies=["a", "b", "c"],
        prospects=["p", "q"],
        scenarios=["s"],
        seeds=[3, 5],
        openers="both",
        models={"rep": ["m1", "m2"], "prospect": "m3"},
    )
    episodes = expand(spec)
    assert len(episodes) == 3 * 2 * 2 * 2 * 2
    assert len({e.episode_id for e in episodes}) == len(episodes)
    assert [e.episode_id for e in expand(spec)] == [e.episode_id for e in episodes]

    def cell(e):
        return (e.prospect, e.scenario, e.seed, e.opener, e.rep_model.model, e.prospect_model.model)

    cells = {s: {cell(e) for e in episodes if e.strategy == s} for s in spec.strategies}
    assert cells["a"] == cells["b"] == cells["c"]  # every strategy meets the same conditions


def test_bad_specs_are_one_line_errors(tmp_path, catalog):
    path = spec_file(tmp_path, "http://127.0.0.1:9/v1", prospects=["nobody"])
    with pytest.raises(CatalogError) as exc:
        load_experiment(path, catalog)
    assert "\n" not in str(exc.value) and "field 'prospects'" in str(exc.value) and "nobody" in str(exc.value)
    path = spec_file(tmp_path, "http://127.0.0.1:9/v1", concurrency="many")
    with pytest.raises(CatalogError, match="field 'concurrency'"):
        load_experiment(path, catalog)
    path = spec_file(tmp_path, "http://127.0.0.1:9/v1", baseline="humble-equal")
    with pytest.raises(CatalogError, match="baseline"):
        load_experiment(path, catalog)
    result = run_cli(str(path))
    assert result.exit_code == 2 and "baseline" in result.output


# --------------------------------------------------------------------------- runner


def test_run_writes_results_manifest_and_table(tmp_path):
    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider:
        path = spec_file(tmp_path, provider.api_base)
        result = run_cli(str(path), "--runs-dir", str(tmp_path / "runs"), "--no-cache")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    results = list(read_results(folder))
    assert len(results) == 8 and {r.status for r in results} == {"ok"}
    assert all(r.metrics.deal and r.judgements and r.cost_usd > 0 for r in results)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["planned_episodes"] == 8 and manifest["environment"]["packages"]["litellm"]
    frame = pd.read_parquet(folder / "results.parquet")
    assert len(frame) == 8 and frame["score_discovery"].eq(4).all() and frame["m_deal"].all()
    assert {"strategy", "prospect", "scenario", "seed", "opener", "rep_model", "judge_model"} <= set(frame.columns)
    assert "Per strategy" in result.output and "8/8 episodes finished" in result.output
    assert runner.invoke(app, ["export", str(folder), "--format", "csv"]).exit_code == 0
    assert len(pd.read_csv(folder / "results.csv")) == 8


def test_failures_are_recorded_and_can_be_retried(tmp_path, fast_retries):
    runs = tmp_path / "runs"
    with FakeProvider([Reply(status=401)]) as provider:
        path = spec_file(tmp_path, provider.api_base)
        result = run_cli(str(path), "--runs-dir", str(runs), "--no-cache")
    assert result.exit_code == 0, result.output
    (folder,) = runs.iterdir()
    failed = list(read_results(folder))
    assert len(failed) == 8 and all(r.status == "failed" and "AuthenticationError" in r.error for r in failed)
    assert "failures:" in result.output
    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider:
        path = spec_file(tmp_path, provider.api_base)
        # a new provider port changes the spec: the runner refuses to mix specs in one folder
        mismatch = run_cli(str(path), "--resume", str(folder), "--retry-failed", "--no-cache")
        assert mismatch.exit_code == 2 and "different spec" in mismatch.output
    latest = latest_results(folder)
    assert len(latest) == 8


def test_retry_failed_reruns_only_failures(tmp_path, fast_retries):
    runs = tmp_path / "runs"
    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider:
        path = spec_file(tmp_path, provider.api_base)
        assert run_cli(str(path), "--runs-dir", str(runs), "--no-cache").exit_code == 0
        (folder,) = runs.iterdir()
        # Turn two results into failures, as a flaky provider would have.
        lines = (folder / "episodes.jsonl").read_text().splitlines()
        broken = []
        for i, line in enumerate(lines):
            record = json.loads(line)
            if i < 2:
                record |= {"status": "failed", "error": "turn 0: simulated outage"}
            broken.append(json.dumps(record))
        (folder / "episodes.jsonl").write_text("\n".join(broken) + "\n")
        plain = run_cli(str(path), "--resume", str(folder), "--no-cache")
        assert "0 to run" in plain.output
        retried = run_cli(str(path), "--resume", str(folder), "--retry-failed", "--no-cache")
    assert retried.exit_code == 0, retried.output
    assert "2 to run" in retried.output
    latest = latest_results(folder)
    assert len(latest) == 8 and all(r.status == "ok" for r in latest.values())
    assert len(list(read_results(folder))) == 10  # history kept; the table uses the latest line


def test_second_run_with_cache_makes_no_model_calls(tmp_path):
    cache = tmp_path / "cache"
    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider:
        path = spec_file(tmp_path, provider.api_base)
        first = run_cli(str(path), "--runs-dir", str(tmp_path / "a"), "--cache-dir", str(cache))
        sent = len(provider.requests)
        second = run_cli(str(path), "--runs-dir", str(tmp_path / "b"), "--cache-dir", str(cache))
        assert len(provider.requests) == sent  # nothing new reached the provider
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "model calls 0 (0 retries)," in second.output and "cost $0.0000" in second.output
    (folder,) = (tmp_path / "b").iterdir()
    assert all(r.cached_calls > 0 and r.model_calls == 0 for r in read_results(folder))


def test_budget_stops_starting_episodes_and_resume_continues(tmp_path):
    runs = tmp_path / "runs"
    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider:
        path = spec_file(tmp_path, provider.api_base, concurrency=1)
        stopped = run_cli(str(path), "--runs-dir", str(runs), "--no-cache", "--max-cost", "0.0001")
        assert stopped.exit_code == 0, stopped.output
        (folder,) = runs.iterdir()
        done = list(read_results(folder))
        assert 1 <= len(done) < 8
        assert "budget reached" in stopped.output
        print(stopped.output)
        resumed = run_cli(str(path), "--resume", str(folder), "--no-cache")
    assert resumed.exit_code == 0, resumed.output
    ids = [r.episode_id for r in read_results(folder)]
    assert len(ids) == 8 and len(set(ids)) == 8


def test_a_run_folder_has_one_writer(tmp_path):
    with (
        RunStore(tmp_path / "run"),
        pytest.raises(RunLockedError, match="another sandbox process"),
        RunStore(tmp_path / "run"),
    ):
        pass


def test_torn_last_line_is_trimmed_on_resume(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "episodes.jsonl").write_text('{"run_id": "x"')  # killed mid-write
    assert list(read_results(folder)) == []
    with RunStore(folder):
        pass
    assert (folder / "episodes.jsonl").read_text() == ""


RUN_KEY = "sk-test-runner-not-a-real-key"
# `sandbox` in a process of its own, forked from a server process that imported sandbox once: a fresh
# interpreter spends seconds of CPU on imports, for each of the ten processes these tests start. A
# forked one is as separate: its own files, locks and exit, and SIGKILL lands on it alone. The runs
# talk to the fake provider over the wire transport, which does not import litellm.
FORKSERVER = multiprocessing.get_context("forkserver")
PRELOAD = ["tests.test_experiment", "sandbox.runner", "sandbox.report", "sandbox.models.call", "matplotlib.pyplot"]
FORKSERVER.set_forkserver_preload(PRELOAD)


def _sandbox_main(args: list[str], stdout: str, stderr: str) -> None:
    """The child: ``sandbox <args>`` from the repository root, its output into two files."""
    os.chdir(ROOT)
    os.environ["OPENAI_API_KEY"] = RUN_KEY
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    app(args, prog_name="sandbox")  # exits with the command's status


class SandboxProcess:
    """One ``sandbox`` process; ``stderr`` is what it wrote there."""

    count = 0

    def __init__(self, args: list[str], folder: Path):
        SandboxProcess.count += 1
        self._out = folder / f"sandbox-{SandboxProcess.count}.stdout"
        self._err = folder / f"sandbox-{SandboxProcess.count}.stderr"
        self.process = FORKSERVER.Process(target=_sandbox_main, args=(args, str(self._out), str(self._err)))
        self.process.start()

    def wait(self, timeout: float) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.kill()
            raise AssertionError(f"sandbox did not exit within {timeout:.0f} s")
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()  # SIGKILL
        self.process.join(10)

    @property
    def stderr(self) -> str:
        return self._err.read_text()


def run_then_sigkill(spec: Path, runs: Path, kill_after: int, resume: Path | None = None) -> Path:
    """Start ``sandbox run`` (or ``--resume`` of ``resume``) in its own process and SIGKILL it once
    ``kill_after`` episodes are on disk, plus a random few milliseconds so the kill can land mid-episode
    or mid-write."""
    where = ["--resume", str(resume)] if resume else ["--runs-dir", str(runs)]
    process = SandboxProcess(["run", str(spec), *where, "--no-cache"], spec.parent)
    deadline = time.monotonic() + 60
    folder = None
    while time.monotonic() < deadline:
        found = list(runs.glob("*/episodes.jsonl")) if runs.exists() else []
        if found and len(found[0].read_text().splitlines()) >= kill_after:
            folder = found[0].parent
            time.sleep(random.Random(kill_after).uniform(0, 0.08))
            break
        time.sleep(0.02)
    process.kill()
    assert folder is not None, f"the run never wrote {kill_after} episodes"
    return folder


def test_sigkill_then_resume_gives_every_episode_exactly_once(tmp_path):
    """SIGKILL once 1, 3, 6, 9 and 12 of 16 episodes are on disk: the run, then each resume of the
    killed run in turn; after every kill no episode is there twice, and a last ``--resume`` completes
    the run with every episode exactly once."""
    with FakeProvider([Reply(content=json.dumps(DEAL), delay_s=0.05)]) as provider:
        path = spec_file(tmp_path, provider.api_base, concurrency=2, seeds=4)
        folder = None
        for kill_after in (1, 3, 6, 9, 12):
            folder = run_then_sigkill(path, tmp_path / "runs", kill_after, resume=folder)
            counts = Counter(r.episode_id for r in read_results(folder))
            before = sum(counts.values())
            assert kill_after <= before < 16 and max(counts.values()) == 1
            print(f"\nSIGKILL after {before} episodes on disk (kill point {kill_after}), none twice")
        resumed = run_cli(str(path), "--resume", str(folder), "--no-cache")
    assert resumed.exit_code == 0, resumed.output
    ids = [r.episode_id for r in read_results(folder)]
    counts = Counter(ids)
    assert len(counts) == 16 and max(counts.values()) == 1
    print(f"SIGKILL five times, then --resume: {len(ids)} lines, {len(counts)} distinct ids")


def test_two_processes_resuming_one_killed_run_at_once(tmp_path):
    with FakeProvider([Reply(content=json.dumps(DEAL), delay_s=0.05)]) as provider:
        path = spec_file(tmp_path, provider.api_base, concurrency=2, seeds=4)
        folder = run_then_sigkill(path, tmp_path / "runs", 4)
        both = [SandboxProcess(["run", str(path), "--resume", str(folder), "--no-cache"], tmp_path) for _ in range(2)]
        outcomes = sorted((p.wait(120), p.stderr) for p in both)
    (ok_code, _), (refused_code, refused_err) = outcomes
    assert (ok_code, refused_code) == (0, 2)
    error_lines = [line for line in refused_err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "being written by another sandbox process" in error_lines[0]
    ids = [r.episode_id for r in read_results(folder)]
    assert len(ids) == 16 == len(set(ids))
    lines = (folder / "episodes.jsonl").read_text().splitlines()
    assert all(json.loads(line)["episode_id"] for line in lines)  # every line whole
    print(f"\ntwo processes resuming one killed run at once: exit codes 0 and 2; {len(lines)} whole lines, 16 ids")


async def test_rate_limits_pace_requests_per_model():
    from aiolimiter import AsyncLimiter

    from sandbox.models import CallContext

    context = CallContext(request_limits={"m": AsyncLimiter(1, 0.3)}, token_limits={"m": AsyncLimiter(1000, 0.3)})
    started = time.perf_counter()
    for _ in range(3):
        await context.respect_limits("m", 100)
    assert time.perf_counter() - started >= 0.5  # 3 requests at 1 per 0.3 s
    started = time.perf_counter()
    await context.respect_limits("other-model", 100)  # unlimited models are not slowed
    assert time.perf_counter() - started < 0.25  # well under one 0.3 s interval, even on a loaded machine


def test_spec_rate_limits_become_limiters():
    from sandbox.runner import limiters

    spec = ExperimentSpec(
        id="x",
        strategies=["a"],
        prospects=["p"],
        scenarios=["s"],
        rate_limits={"openai/gpt-4o-mini": {"requests_per_minute": 500, "tokens_per_minute": 200000}},
    )
    requests, tokens = limiters(spec)
    assert requests["openai/gpt-4o-mini"].max_rate == 500 and tokens["openai/gpt-4o-mini"].max_rate == 200000


def test_two_processes_on_one_run_folder_one_refuses(tmp_path):
    runs = tmp_path / "runs"
    # 16 episodes of 5 calls in a row at 0.05 s each: the first process runs about 4 s after its
    # results file appears, and the second is refused within a fraction of a second of starting.
    with FakeProvider([Reply(content=json.dumps(DEAL), delay_s=0.05)]) as provider:
        path = spec_file(tmp_path, provider.api_base, concurrency=1, seeds=4)
        first = SandboxProcess(["run", str(path), "--runs-dir", str(runs), "--no-cache"], tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(runs.glob("*/episodes.jsonl")):
            time.sleep(0.02)
        (folder,) = [p.parent for p in runs.glob("*/episodes.jsonl")]
        second = SandboxProcess(["run", str(path), "--resume", str(folder), "--no-cache"], tmp_path)
        second_code = second.wait(60)
        assert first.wait(120) == 0
    assert second_code == 2
    error_lines = [line for line in second.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and str(folder) in error_lines[0]  # one line, the folder named whole
    assert "being written by another sandbox process" in error_lines[0]
    ids = [r.episode_id for r in read_results(folder)]
    assert len(ids) == 16 == len(set(ids))
    lines = (folder / "episodes.jsonl").read_text().splitlines()
    assert all(json.loads(line)["episode_id"] for line in lines)  # every line whole
    print(f"\ntwo processes on one run folder: the second exited {second_code}: {error_lines[0]}")
    print(f"the results file: {len(lines)} lines, every one whole, {len(set(ids))} distinct episodes")


@pytest.mark.parametrize("cap", [None, 2])
def test_max_in_flight_caps_requests_at_once_per_model(tmp_path, catalog, cap):
    from sandbox.runner import run

    with FakeProvider([Reply(content=json.dumps(DEAL), delay_s=0.1)]) as provider:
        limits = {"rate_limits": {"openai/gpt-4o-mini": {"max_in_flight": cap}}} if cap else {}
        path = spec_file(tmp_path, provider.api_base, concurrency=8, seeds=4, max_turns=2, **limits)
        spec = load_experiment(path, catalog)
        spec = spec.model_copy(update={"models": spec.models.model_copy(update={"judge": []})})
        summary = run(spec, catalog, folder=tmp_path / "run", report=False).summary
        most = provider.max_active
    assert summary.ok == 16
    assert most == 2 if cap else most > 2  # with no cap, the 8 workers overlap freely


def test_the_embedded_model_gets_one_place_per_slot():
    import asyncio

    from sandbox.profiles import Profiles
    from sandbox.runner import in_flight_places

    async def places_taken() -> tuple[bool, bool]:
        profiles = Profiles([ModelSettings()], embedded_api_base="http://127.0.0.1:1/v1", embedded_slots=3)
        spec = ExperimentSpec(id="x", strategies=["a"], prospects=["p"], scenarios=["s"])
        place = in_flight_places(spec, profiles)["local"]
        for _ in range(2):
            await place.acquire()
        before = place.locked()
        await place.acquire()
        return before, place.locked()

    assert asyncio.run(places_taken()) == (False, True)  # the third request takes the last place


def test_resuming_a_finished_embedded_run_loads_no_model(tmp_path, monkeypatch, no_local_server):
    """Every episode already finished: `--resume` rewrites the table and report and starts no server."""
    from sandbox.catalog import load_catalog
    from sandbox.results import EpisodeResult
    from sandbox.runner import manifest_for

    monkeypatch.chdir(ROOT)
    spec_path = ROOT / "experiments" / "quickstart.yaml"
    spec = load_experiment(spec_path, load_catalog())
    folder = tmp_path / "runs" / "quickstart-done"
    with RunStore(folder) as store:
        store.write_manifest(manifest_for(spec, folder.name, str(spec_path), len(expand(spec))))
        for episode in expand(spec):
            failed = EpisodeResult(
                run_id=folder.name, episode_id=episode.episode_id, spec=episode, status="failed", error="outage"
            )
            store.append(failed)  # finished, as failures: resuming without --retry-failed leaves them be
    result = runner.invoke(app, ["run", "quickstart", "--resume", str(folder)])
    assert result.exit_code == 0, result.output
    assert "4 already finished, 0 to run" in result.output and (folder / "report.html").exists()
