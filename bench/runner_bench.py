"""Runner benchmarks against the loopback fake provider: overhead, concurrency, memory.

    python bench/runner_bench.py overhead     [--latency 0.5] [--episodes 20]
    python bench/runner_bench.py concurrency  [--latency 0.5] [--episodes-per-slot 4]
    python bench/runner_bench.py memory       --episodes 1000

Each prints its figures; none asserts. Episodes are 2 turns (rep talks, prospect accepts) with no
judge, so calls per episode = 2 and the theoretical episode rate at concurrency c with provider
latency L is c / (2 L).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENAI_API_KEY", "sk-test-bench-not-a-real-key")

import contextlib  # noqa: E402
import subprocess  # noqa: E402

from sandbox.catalog import load_catalog  # noqa: E402
from sandbox.experiment import ExperimentSpec  # noqa: E402
from sandbox.runner import RunOptions, plan_run, run_experiment  # noqa: E402
from sandbox.store import RunStore  # noqa: E402

DEAL = {"message": "Fine, we accept.", "action": "accept", "price": None, "terms": None}
CALLS_PER_EPISODE = 2


@contextlib.contextmanager
def provider_process(latency: float):  # noqa: ANN201
    """The fake provider in its own process, so its CPU time is not counted as our overhead."""
    command = [sys.executable, "-m", "tests.fake_provider", "--delay", str(latency), "--content", json.dumps(DEAL)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def run(api_base: str, episodes: int, concurrency: int, folder: Path) -> tuple[float, int]:
    strategies = ["eager-to-please", "assertive-consultant"]
    spec = ExperimentSpec(
        id="bench",
        strategies=strategies,
        prospects=["skeptic"],
        scenarios=["saas-seats"],
        seeds=max(1, episodes // len(strategies)),
        max_turns=2,
        models={"rep": {"model": "openai/bench", "api_base": api_base, "timeout_s": 120},
                "prospect": {"model": "openai/bench", "api_base": api_base, "timeout_s": 120}},
        concurrency=concurrency,
    )  # fmt: skip
    catalog = load_catalog(ROOT / "personas")
    with RunStore(folder) as store:
        plan = plan_run(spec, folder, retry_failed=False)
        started = time.perf_counter()
        summary = asyncio.run(run_experiment(spec, catalog, None, store, "bench", plan, None, RunOptions()))
        wall = time.perf_counter() - started
    assert summary.failed == 0, summary.failures_by_reason
    return wall, summary.ok


def overhead(latency: float, episodes: int) -> None:
    with provider_process(latency) as api_base, tempfile.TemporaryDirectory() as tmp:
        wall, done = run(api_base, episodes, 1, Path(tmp) / "run")
    calls = done * CALLS_PER_EPISODE
    waiting = calls * latency
    print(f"overhead: latency {latency:.3f} s, {done} episodes, {calls} calls, concurrency 1")
    print(
        f"  wall {wall:.2f} s, waiting on the provider {waiting:.2f} s, overhead {100 * (wall - waiting) / wall:.2f} %"
    )


def concurrency(latency: float, per_slot: int) -> None:
    print(f"concurrency: provider latency L = {latency:.3f} s, {CALLS_PER_EPISODE} calls per episode")
    for c in (1, 8, 64, 256):
        episodes = max(4, c * per_slot)
        with provider_process(latency) as api_base, tempfile.TemporaryDirectory() as tmp:
            wall, done = run(api_base, episodes, c, Path(tmp) / "run")
        rate = done / wall
        bound = c / (CALLS_PER_EPISODE * latency)
        print(
            f"  c={c:>3}: {done} episodes in {wall:6.2f} s = {rate:7.2f} ep/s; "
            f"bound {bound:7.2f}; ratio {rate / bound:.2f}"
        )


def memory(episodes: int) -> None:
    with provider_process(0.0) as api_base, tempfile.TemporaryDirectory() as tmp:
        wall, done = run(api_base, episodes, 64, Path(tmp) / "run")
        size = (Path(tmp) / "run" / "episodes.jsonl").stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory: {done} episodes in {wall:.1f} s; results file {size / 1e6:.1f} MB; peak RSS {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["overhead", "concurrency", "memory"])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--episodes-per-slot", type=int, default=4)
    args = parser.parse_args()
    if args.which == "overhead":
        overhead(args.latency, args.episodes)
    elif args.which == "concurrency":
        concurrency(args.latency, args.episodes_per_slot)
    else:
        memory(args.episodes)


if __name__ == "__main__":
    main()
