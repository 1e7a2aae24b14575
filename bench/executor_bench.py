"""The local and the Ray executor on the same run, against the loopback fake provider.

    python bench/executor_bench.py run      [--episodes 20000] [--executors local,ray] [--latency 0]
    python bench/executor_bench.py limiter  [--acquires 20000] [--concurrency 64]
    python bench/executor_bench.py scale    [--episodes 20000] [--report] [--judged 8]

``run`` plays the same spec (2-turn episodes, no judge, concurrency 64, the provider in its own process)
once per executor, each in a fresh driver process so that its peak RSS is its own, and prints
episodes/s, the driver's peak RSS, and the share of the run's wall time the driver's process spent
on its CPUs (user + system time of the process, all its threads, over wall time): the rest it spent
waiting. ``limiter`` measures the one limiter actor's throughput: acquire and release pairs a second,
from as many callers at once as the run would have. ``scale`` measures what grows with a run's size,
for the README's figures at 1,000,000 episodes: bytes per result line, the plan's memory per episode,
and the time to read a run back (resume's plan) and to build its table. Each prints; none asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENAI_API_KEY", "sk-test-bench-not-a-real-key")

from bench.runner_bench import provider_process, provider_stats  # noqa: E402
from sandbox.catalog import load_catalog  # noqa: E402
from sandbox.experiment import ExperimentSpec  # noqa: E402

CONCURRENCY = 64


def bench_spec(api_base: str, episodes: int, concurrency: int = CONCURRENCY) -> ExperimentSpec:
    """runner_bench's spec: 2 strategies x 1 prospect x 1 scenario x N/2 seeds, 2 turns, no judge."""
    model = {"model": "openai/bench", "api_base": api_base, "timeout_s": 120}
    return ExperimentSpec(
        id="bench",
        strategies=["eager-to-please", "assertive-consultant"],
        prospects=["skeptic"],
        scenarios=["saas-seats"],
        seeds=max(1, episodes // 2),
        max_turns=2,
        models={"rep": model, "prospect": model},
        concurrency=concurrency,
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_driver(executor: str, episodes: int, latency: float) -> dict:
    """One run through ``runner.run`` in this process (the driver); its figures as a dict."""
    from sandbox.runner import run

    catalog = load_catalog(ROOT / "personas")
    with provider_process(latency) as api_base, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        spec = bench_spec(api_base, episodes)
        cpu_before, started = cpu_seconds(), time.perf_counter()
        outcome = run(spec, catalog, folder=folder, report=False, preflight=False, executor=executor)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
        stats = provider_stats(api_base)
        summary = outcome.summary
        size = (folder / "episodes.jsonl").stat().st_size
    return {
        "executor": executor,
        "episodes": summary.ok,
        "failed": summary.failed,
        "wall_s": wall,
        "episodes_per_s": summary.ok / wall,
        "steady_episodes_per_s": summary.ok / (stats["last_at"] - stats["first_at"]),
        "driver_cpu_s": cpu,
        "driver_busy_share": cpu / wall,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results_mb": size / 1e6,
        "calls": stats["served"],
    }


def run_both(episodes: int, executors: list[str], latency: float) -> None:
    print(f"executors: {episodes} episodes each, 2 calls per episode, concurrency {CONCURRENCY}, latency {latency} s")
    for executor in executors:
        command = [sys.executable, __file__, "driver", "--executor", executor, "--episodes", str(episodes)]
        command += ["--latency", str(latency)]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            print(f"  {executor}: failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-3:]}")
            continue
        f = json.loads(lines[-1])
        print(
            f"  {executor:>5}: {f['episodes']} episodes ({f['failed']} failed) in {f['wall_s']:.1f} s = "
            f"{f['episodes_per_s']:.1f} episodes/s (steady state {f['steady_episodes_per_s']:.1f}); driver peak RSS "
            f"{f['driver_peak_rss_mb']:.0f} MB; driver on CPU {f['driver_cpu_s']:.1f} s = "
            f"{100 * f['driver_busy_share']:.1f} % of wall, waiting {100 * max(0.0, 1 - f['driver_busy_share']):.1f} %"
            f"{' (its threads together busier than one core)' if f['driver_busy_share'] > 1 else ''}; "
            f"results {f['results_mb']:.1f} MB"
        )


def limiter(acquires: int, concurrency: int) -> None:
    """Requests through the one Limiter actor, from ``concurrency`` callers at once, each as a worker
    makes it (``ClusterCallContext.within_limits``: the acquire awaited, the release sent without waiting):
    the most requests a second to limited models the cluster can make. The callers are the driver here."""
    import ray

    from sandbox.ray_executor import ClusterCallContext, Limiter

    spec = ExperimentSpec.model_validate(
        {
            "id": "limiter",
            "strategies": ["eager-to-please"],
            "prospects": ["skeptic"],
            "scenarios": ["saas-seats"],
            "models": {"rep": "m", "prospect": "m"},
            "rate_limits": {"m": {"requests_per_minute": 10**9, "max_in_flight": 10**6}},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    actor = ray.remote(Limiter).options(num_cpus=0, max_concurrency=100_000).remote(spec, {"m": 10**6})
    ray.get(actor.ready.remote())

    context = ClusterCallContext(limiter=actor, limited=frozenset({"m"}))

    async def caller(n: int) -> None:
        for _ in range(n):
            async with context.within_limits("m", 100):  # what a worker does around each request
                pass

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(caller(acquires // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - started

    asyncio.run(main())  # warm: the actor's first calls
    wall = asyncio.run(main())
    done = (acquires // concurrency) * concurrency
    print(
        f"limiter: {done} limited requests (acquire, then release) from {concurrency} callers in {wall:.2f} s = "
        f"{done / wall:.0f} requests/s ({1e6 * wall / done:.0f} us each)"
    )
    ray.shutdown()


def scale(episodes: int, report: bool, judged_episodes: int) -> None:
    """What grows with the run: a result line, the plan, reading the run back, building the table."""
    import gc
    import tracemalloc

    from sandbox.experiment import expand
    from sandbox.runfolder import RunFolder
    from sandbox.runner import run
    from sandbox.table import export

    catalog = load_catalog(ROOT / "personas")
    with provider_process(0.0) as api_base, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        spec = bench_spec(api_base, episodes)
        gc.collect()
        tracemalloc.start()
        planned = expand(spec)
        plan_bytes, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"scale: plan of {len(planned)} episodes holds {plan_bytes / 1e6:.1f} MB = "
              f"{plan_bytes / len(planned):.0f} bytes per episode spec")  # fmt: skip
        del planned
        run(spec, catalog, folder=folder, report=False, preflight=False)
        size = (folder / "episodes.jsonl").stat().st_size
        print(f"  results: {episodes} lines, {size / 1e6:.1f} MB = {size / episodes:.0f} bytes per episode")
        started = time.perf_counter()
        read = sum(1 for _ in RunFolder(folder).latest())
        print(f"  read back (resume's plan): {read} results in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        export(folder)
        print(f"  table (results.parquet): {time.perf_counter() - started:.1f} s")
        if report:
            from sandbox.report import write_report

            started = time.perf_counter()
            _, html = write_report(folder)
            print(f"  report: {time.perf_counter() - started:.1f} s; report.html {html.stat().st_size / 1e6:.1f} MB")
    judged(catalog, judged_episodes)


def judged(catalog: object, episodes: int = 8) -> None:
    """A judged run: the tests' spec (2 strategies x 2 prospects, 4 turns at most, ten criteria judged),
    ``episodes`` of it on the in-process fake provider: bytes per result line, and the report's time."""
    from sandbox.experiment import load_experiment
    from sandbox.judge import DEFAULT_RUBRIC, load_rubric
    from sandbox.report import write_report
    from sandbox.runner import run
    from tests.fake_provider import FakeProvider, deal_or_walk, spec_file

    with FakeProvider(deal_or_walk(), keep_requests=False) as provider, tempfile.TemporaryDirectory() as tmp:
        path = spec_file(Path(tmp), provider.api_base, seeds=max(1, episodes // 4), concurrency=CONCURRENCY)
        spec = load_experiment(path, catalog)
        folder = Path(tmp) / "run"
        run(spec, catalog, load_rubric(DEFAULT_RUBRIC), folder=folder, report=False, preflight=False)
        lines = (folder / "episodes.jsonl").read_bytes().splitlines()
        started = time.perf_counter()
        _, html = write_report(folder)
        took, html_mb = time.perf_counter() - started, html.stat().st_size / 1e6
    print(
        f"  judged: {len(lines)} episodes (4 turns at most, 10 criteria), {sum(map(len, lines)) / len(lines):.0f} "
        f"bytes per result line; report {took:.1f} s, report.html {html_mb:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["run", "driver", "limiter", "scale"])
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--executors", default="local,ray")
    parser.add_argument("--executor", default="local", help="(driver: the one executor this process runs)")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--acquires", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--report", action="store_true", help="(scale: also time write_report)")
    parser.add_argument("--judged", type=int, default=8, help="(scale: episodes of the judged run)")
    args = parser.parse_args()
    if args.which == "run":
        run_both(args.episodes, args.executors.split(","), args.latency)
    elif args.which == "driver":
        print(json.dumps(one_driver(args.executor, args.episodes, args.latency)))
    elif args.which == "limiter":
        limiter(args.acquires, args.concurrency)
    else:
        scale(args.episodes, args.report, args.judged)


if __name__ == "__main__":
    main()
