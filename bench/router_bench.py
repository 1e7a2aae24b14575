"""Many deployments of one model through litellm's Router, against loopback fake providers.

    python bench/router_bench.py share     [--latency 0.25] [--slots 4] [--episodes 120] [--concurrency 32]
                                           [--weights 3,1]
    python bench/router_bench.py failover  [--latency 0.25] [--slots 4] [--episodes 120] [--concurrency 32]
                                           [--kill-at 0.3]

Each fake deployment runs in its own process and answers at most ``--slots`` requests at once, each
after ``--latency`` seconds, queueing the rest (a vLLM server's batch, in miniature): one deployment
serves at most slots / latency requests a second, so a second deployment can only help by taking
calls. Episodes are 2 turns (rep talks, prospect accepts), 2 calls each, no judge.

``share`` runs the same spec three ways: one deployment alone (a plain ``api_base``, today's path),
the same deployment alone through the Router (its overhead), and two deployments through the Router;
it prints each deployment's share of the calls and the throughput against one deployment alone.
``failover`` runs two deployments and SIGKILLs one once ``--kill-at`` of the run's calls are served;
it prints the episodes planned, finished, failed, lost and duplicated, and the retries (the run's live
count, the results file's attempts, and the run log's retry lines naming the killed deployment).
Nothing asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENAI_API_KEY", "test-bench-not-a-real-key")

from bench.runner_bench import provider_server, provider_stats  # noqa: E402
from sandbox.catalog import load_catalog  # noqa: E402
from sandbox.experiment import ExperimentSpec  # noqa: E402
from sandbox.runlog import LOG_FILE  # noqa: E402
from sandbox.runner import RunOutcome  # noqa: E402
from sandbox.runner import run as run_spec  # noqa: E402
from sandbox.store import read_results  # noqa: E402

CALLS_PER_EPISODE = 2
MODEL = "openai/bench"


def deployment(latency: float, slots: int):  # noqa: ANN201
    """One fake deployment in its own process, answering at most ``slots`` at once; yields (api_base, process)."""
    return provider_server(latency, "--slots", str(slots))


def served(api_base: str) -> int:
    return int(provider_stats(api_base)["served"])


def spec_for(model: dict[str, Any], episodes: int, concurrency: int) -> ExperimentSpec:
    strategies = ["eager-to-please", "assertive-consultant"]
    return ExperimentSpec(
        id="router-bench",
        strategies=strategies,
        prospects=["skeptic"],
        scenarios=["saas-seats"],
        seeds=max(1, episodes // len(strategies)),
        max_turns=2,
        models={"rep": model, "prospect": model},
        concurrency=concurrency,
    )


def timed_run(model: dict[str, Any], episodes: int, concurrency: int, folder: Path) -> tuple[float, RunOutcome]:
    catalog = load_catalog(ROOT / "personas")
    started = time.perf_counter()
    outcome = run_spec(spec_for(model, episodes, concurrency), catalog, folder=folder, report=False)
    return time.perf_counter() - started, outcome


def routed(bases: list[str], weights: list[float] | None = None) -> dict[str, Any]:
    deployments = [{"api_base": b} | ({"weight": weights[i]} if weights else {}) for i, b in enumerate(bases)]
    return {"model": MODEL, "deployments": deployments, "timeout_s": 120}


def share(latency: float, slots: int, episodes: int, concurrency: int, weights: list[float] | None) -> None:
    """Each configuration gets fresh deployments, so each one's first request and last reply bound its
    steady state (the rate without the run's start-up: litellm's import, paid by the Router's first run
    only, and the preflight)."""
    capacity = slots / latency
    print(
        f"share: each deployment {slots} requests at once x {latency:.3f} s = {capacity:.1f} requests/s at most; "
        f"{episodes} episodes x {CALLS_PER_EPISODE} calls, concurrency {concurrency}"
    )
    rates: dict[str, tuple[float, float]] = {}  # configuration -> (episodes/s over the run, over the steady state)
    configurations = [
        ("one deployment (api_base)", 1, lambda bases: {"model": MODEL, "api_base": bases[0], "timeout_s": 120}),
        ("one deployment (Router)", 1, lambda bases: routed(bases)),
        ("two deployments (Router)", 2, lambda bases: routed(bases, weights)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, count, model) in enumerate(configurations):
            with contextlib.ExitStack() as stack:
                bases = [stack.enter_context(deployment(latency, slots))[0] for _ in range(count)]
                wall, outcome = timed_run(model(bases), episodes, concurrency, Path(tmp) / str(index))
                seen = [provider_stats(base) for base in bases]
            steady = max(s["last_at"] for s in seen) - min(s["first_at"] for s in seen)
            ok = outcome.summary.ok
            rates[label] = (ok / wall, ok / steady)
            print(
                f"  {label:<26} {ok} ok in {wall:6.2f} s = {ok / wall:6.2f} ep/s; steady state {steady:6.2f} s = "
                f"{ok / steady:6.2f} ep/s, {sum(s['served'] for s in seen) / steady:6.2f} calls/s; "
                f"calls counted {outcome.summary.calls_made}, served {sum(s['served'] for s in seen)}, "
                f"retries {outcome.summary.retries}"
            )
            if count > 1:
                total = sum(s["served"] for s in seen)
                shares = ", ".join(
                    f"deployment {i + 1}{f' (weight {weights[i]:g})' if weights else ''} {s['served']} = "
                    f"{100 * s['served'] / total:.1f} %"
                    for i, s in enumerate(seen)
                )
                print(f"    calls per deployment: {shares}")
    two = rates["two deployments (Router)"]
    for alone in ("one deployment (api_base)", "one deployment (Router)"):
        one = rates[alone]
        print(
            f"  two deployments / {alone}: {two[0] / one[0]:.2f} x over the run, "
            f"{two[1] / one[1]:.2f} x in the steady state"
        )


def failover(latency: float, slots: int, episodes: int, concurrency: int, kill_at: float) -> None:
    print(
        f"failover: two deployments ({slots} at once x {latency:.3f} s each), {episodes} episodes, concurrency "
        f"{concurrency}; deployment 2 SIGKILLed once {100 * kill_at:.0f} % of the calls are served"
    )
    with tempfile.TemporaryDirectory() as tmp, deployment(latency, slots) as (a, _):
        with deployment(latency, slots) as (b, victim):
            before: dict[str, int] = {}

            def kill() -> None:  # once the deployments have served that share of the run's calls
                while served(a) + served(b) < kill_at * episodes * CALLS_PER_EPISODE:
                    time.sleep(0.05)
                before["served"] = served(b)
                victim.send_signal(signal.SIGKILL)
                before["at"] = time.perf_counter()

            killer = threading.Thread(target=kill, daemon=True)
            started = time.perf_counter()
            killer.start()
            wall, outcome = timed_run(routed([a, b]), episodes, concurrency, Path(tmp) / "run")
            killer.join()
        survivor = served(a)
        folder = Path(tmp) / "run"
        results = list(read_results(folder))
        log = (folder / LOG_FILE).read_text()
    ids = Counter(r.episode_id for r in results)
    planned = {e.episode_id for e in outcome.plan.planned}
    calls = [c for r in results if r.transcript for c in r.transcript.calls]
    summary = outcome.summary
    print(
        f"  killed at {before['at'] - started:.1f} s after serving {before['served']} calls; the run ended at "
        f"{wall:.1f} s; deployment 1 served {survivor}"
    )
    print(
        f"  episodes {len(planned)}, finished {summary.ok}, failed {summary.failed} {summary.failures_by_reason}, "
        f"lost {len(planned - set(ids))}, duplicated {sum(n - 1 for n in ids.values())}"
    )
    print(
        f"  retries: live count {summary.retries}, results file {sum(c.attempts - 1 for c in calls)}; run log lines "
        f"naming the killed deployment {log.count(f'retry {MODEL} at {b} ')}, retry lines in all {log.count('retry ')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["share", "failover"])
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--weights", default="", help="the two deployments' weights, comma-separated (none: the least busy is picked)"
    )
    parser.add_argument("--kill-at", type=float, default=0.3, help="the share of the run's calls served by then")
    args = parser.parse_args()
    if args.which == "share":
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        share(args.latency, args.slots, args.episodes, args.concurrency, weights)
    else:
        failover(args.latency, args.slots, args.episodes, args.concurrency, args.kill_at)


if __name__ == "__main__":
    main()
