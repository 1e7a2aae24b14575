"""Runner benchmarks against the loopback fake provider: overhead, concurrency, memory.

    python bench/runner_bench.py overhead     [--latency 0.5] [--episodes 100]
    python bench/runner_bench.py concurrency  [--latency 0.5] [--episodes-per-slot 4]
    python bench/runner_bench.py floor        [--latency 0.5] [--episodes-per-slot 4]
    python bench/runner_bench.py memory       --episodes 1000

Each prints its figures; none asserts. Episodes are 2 turns (rep talks, prospect accepts) with no
judge, so calls per episode = 2 and the theoretical episode rate at concurrency c with provider
latency L is c / (2 L). "Waiting on the provider" is what the provider itself reports (time spent
inside its handler, summed over requests), so its own CPU and any sleep overshoot are not counted
as ours.
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
import gc  # noqa: E402
import subprocess  # noqa: E402
import urllib.request  # noqa: E402

from sandbox.catalog import load_catalog  # noqa: E402
from sandbox.experiment import ExperimentSpec  # noqa: E402
from sandbox.runner import run as run_spec  # noqa: E402

DEAL = {"message": "Fine, we accept.", "action": "accept", "price": None, "terms": None}
CALLS_PER_EPISODE = 2
STARTED_AT = 0.0
PROFILE_DIR: Path | None = None  # --profile DIR
JITTER = 0.0  # --jitter: provider latency uniform in [1-j, 1+j] x L (same mean, no lock-step waves)


@contextlib.contextmanager
def provider_server(latency: float, *options: str):  # noqa: ANN201
    """The fake provider (answering DEAL) in its own process, so its CPU time is not counted as our
    overhead; yields (api_base, process), the process for a bench that kills it mid-run."""
    command = [sys.executable, "-m", "tests.fake_provider", "--delay", str(latency), "--content", json.dumps(DEAL)]
    process = subprocess.Popen([*command, *options], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip(), process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(10)


@contextlib.contextmanager
def provider_process(latency: float):  # noqa: ANN201
    """The fake provider with runner_bench's jitter; yields its api_base."""
    with provider_server(latency, "--jitter", str(JITTER)) as (api_base, _):
        yield api_base


PACKAGES = {
    "sandbox": ("/sandbox/",),
    "litellm": ("/litellm/",),
    "openai SDK": ("/openai/",),
    "httpx / aiohttp": ("/httpx/", "/aiohttp/", "/httpcore/", "/anyio/", "/multidict/", "/yarl/"),
    "pydantic": ("/pydantic/", "/pydantic_core/"),
    "tenacity / aiolimiter / jinja2": ("/tenacity/", "/aiolimiter/", "/jinja2/"),
}


def _is_stdlib(path: str) -> bool:
    return path.startswith("<") or ("/lib/python3" in path and "site-packages" not in path)


def package_of(frame) -> str:  # noqa: ANN001 - a pyinstrument Frame
    """The package a sample's time belongs to: built-ins and the standard library count for the caller
    that used them (typing checks inside the openai SDK are the SDK's), except the event loop itself."""
    function, path = frame.function or "", frame.file_path or ""
    if function.split(".")[-1] in {"poll", "select"}:
        return "idle (waiting on the network)"
    if "/asyncio/" in path:
        return "asyncio event loop"
    while _is_stdlib(path) and frame.parent is not None:
        frame = frame.parent
        path = frame.file_path or ""
    for package, markers in PACKAGES.items():
        if any(marker in path for marker in markers):
            return package
    return "other"


@contextlib.contextmanager
def profiled(label: str):  # noqa: ANN201
    """With --profile DIR: sample the run with pyinstrument, write its flat self-time profile, and print
    where the main thread's time went by package (self time of the innermost frame)."""
    if PROFILE_DIR is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        session = profiler.stop()
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        name = label.replace("=", "").replace(" ", "-")
        totals: dict[str, float] = {}
        functions: dict[tuple[str, str], float] = {}
        stack = [session.root_frame()]
        while stack:
            frame = stack.pop()
            if frame is None:
                continue
            stack.extend(frame.children)
            if frame.is_synthetic and frame.parent is not None:  # a "[self]" leaf: time spent in its parent itself
                package = package_of(frame.parent)
                totals[package] = totals.get(package, 0.0) + frame.time
                where = f"{frame.parent.function}  {frame.parent.file_path_short}:{frame.parent.line_no}"
                functions[(package, where)] = functions.get((package, where), 0.0) + frame.time
        busy = sum(v for k, v in totals.items() if not k.startswith("idle"))
        print(f"  profile {label}: {session.duration:.1f} s sampled, main thread busy {busy:.1f} s; of the busy time:")
        for package, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            if not package.startswith("idle"):
                print(f"    {package:<30} {seconds:6.2f} s  {100 * seconds / busy:5.1f} %")
        lines = [f"{label}: {session.duration:.1f} s sampled; self time by function (main thread), largest first"]
        for (package, where), seconds in sorted(functions.items(), key=lambda kv: -kv[1])[:80]:
            lines.append(f"{seconds:7.3f} s  {100 * seconds / session.duration:5.1f} %  {package:<30} {where}")
        (PROFILE_DIR / f"{name}.txt").write_text("\n".join(lines) + "\n")
        print(f"  flat profile: {PROFILE_DIR / f'{name}.txt'}")


def provider_stats(api_base: str) -> dict:
    with urllib.request.urlopen(api_base.removesuffix("/v1") + "/stats", timeout=10) as response:
        return json.loads(response.read())


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
    global STARTED_AT
    STARTED_AT = time.time()
    started = time.perf_counter()
    with profiled(f"c={concurrency}"):  # the whole run through its one entry point: lock, plan, episodes, table
        summary = run_spec(spec, catalog, folder=folder, report=False).summary
    wall = time.perf_counter() - started
    assert summary.failed == 0, summary.failures_by_reason
    return wall, summary.ok


def overhead(latency: float, episodes: int) -> None:
    """Concurrency 1, so wall time = waiting on the provider + everything that is ours."""
    with provider_process(latency) as api_base, tempfile.TemporaryDirectory() as tmp:
        wall, done = run(api_base, episodes, 1, Path(tmp) / "run")
        stats = provider_stats(api_base)
    calls, waiting = stats["served"], stats["handling_s"]
    start_up = stats["first_at"] - STARTED_AT
    steady = stats["last_at"] - stats["first_at"]
    per_call_ms = 1000 * (steady - waiting) / max(1, calls - 1)
    print(f"overhead: latency {latency:.3f} s, {done} episodes, {calls} calls, concurrency 1")
    print(
        f"  wall {wall:.2f} s, waiting on the provider {waiting:.2f} s, overhead {100 * (wall - waiting) / wall:.2f} %"
    )
    print(
        f"  of which start-up (run start to first request) {start_up:.2f} s; "
        f"steady state {per_call_ms:.1f} ms per call = {100 * (steady - waiting) / steady:.2f} % of the time between"
        " the first request and the last reply"
    )


def rate_line(c: int, episodes: int, wall: float, stats: dict, latency: float) -> str:
    """Episodes per second over the whole run and over the steady state, each against the bound."""
    bound = c / (CALLS_PER_EPISODE * latency)
    steady = stats["last_at"] - stats["first_at"]
    line = (
        f"  c={c:>3}: {episodes} episodes in {wall:6.2f} s = {episodes / wall:7.2f} ep/s, "
        f"ratio {episodes / wall / bound:.2f}; steady state {episodes / steady:7.2f} ep/s, "
        f"ratio {episodes / steady / bound:.2f} (bound {bound:.2f} ep/s)"
    )
    if c == 1:  # one call at a time: the time between calls is all client-side
        line += f"; {1000 * (steady - stats['handling_s']) / (stats['served'] - 1):.1f} ms per call"
    return line


def concurrency(latency: float, per_slot: int, levels: list[int]) -> None:
    """Rate over the whole run, and over the steady state (first request to last reply), so the one-off
    start-up (the first call's lazy imports) is shown apart."""
    print(f"concurrency: provider latency L = {latency:.3f} s, {CALLS_PER_EPISODE} calls per episode")
    for c in levels:
        episodes = max(4, c * per_slot)
        with provider_process(latency) as api_base, tempfile.TemporaryDirectory() as tmp:
            wall, done = run(api_base, episodes, c, Path(tmp) / "run")
            stats = provider_stats(api_base)
        print(rate_line(c, done, wall, stats, latency))


def captured_requests() -> list[dict]:
    """The exact request bodies of one episode (rep turn, prospect turn), captured from our own stack."""
    from tests.fake_provider import FakeProvider, Reply

    with FakeProvider([Reply(content=json.dumps(DEAL))]) as provider, tempfile.TemporaryDirectory() as tmp:
        run(provider.api_base, 1, 1, Path(tmp) / "run")
        return provider.requests[:CALLS_PER_EPISODE]


def floor(latency: float, per_slot: int, levels: list[int]) -> None:
    """The same requests sent by a bare loop of ``litellm.acompletion`` with no sandbox code: the ceiling
    any caller of litellm reaches on this machine. (The runner's own OpenAI-compatible calls no longer go
    through litellm: the OpenAI wire format over httpx, ``sandbox/models/transports.py``.)"""
    import litellm

    bodies = captured_requests()
    print(f"litellm floor: the same {len(bodies)} requests per episode, bare litellm.acompletion, L = {latency:.3f} s")
    for c in levels:
        episodes = max(4, c * per_slot)
        with provider_process(latency) as api_base:

            async def episode(slot: asyncio.Semaphore, base: str = api_base) -> None:
                async with slot:
                    for body in bodies:
                        kwargs = {k: v for k, v in body.items() if k != "model"}
                        await litellm.acompletion(
                            model="openai/bench", api_base=base, num_retries=0, max_retries=0, timeout=120, **kwargs
                        )

            async def main(c: int = c, episodes: int = episodes) -> float:
                gc.freeze()
                slot = asyncio.Semaphore(c)
                started = time.perf_counter()
                await asyncio.gather(*(episode(slot) for _ in range(episodes)))
                return time.perf_counter() - started

            wall = asyncio.run(main())
            stats = provider_stats(api_base)
        print(rate_line(c, episodes, wall, stats, latency))


def memory(episodes: int) -> None:
    with provider_process(0.0) as api_base, tempfile.TemporaryDirectory() as tmp:
        wall, done = run(api_base, episodes, 64, Path(tmp) / "run")
        size = (Path(tmp) / "run" / "episodes.jsonl").stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory: {done} episodes in {wall:.1f} s; results file {size / 1e6:.1f} MB; peak RSS {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["overhead", "concurrency", "floor", "memory"])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--episodes-per-slot", type=int, default=4)
    parser.add_argument("--levels", default="1,8,64,256", help="concurrency levels, comma-separated")
    parser.add_argument("--jitter", type=float, default=0.0, help="provider latency uniform in [1-j, 1+j] x L")
    parser.add_argument("--profile", type=Path, default=None, help="write pyinstrument profiles into this folder")
    args = parser.parse_args()
    global JITTER, PROFILE_DIR
    JITTER = args.jitter
    PROFILE_DIR = args.profile
    if args.jitter:
        print(f"provider latency jitter: uniform in [{1 - args.jitter:.2f}, {1 + args.jitter:.2f}] x L")
    if args.which == "overhead":
        overhead(args.latency, args.episodes)
    elif args.which == "concurrency":
        concurrency(args.latency, args.episodes_per_slot, [int(x) for x in args.levels.split(",")])
    elif args.which == "floor":
        floor(args.latency, args.episodes_per_slot, [int(x) for x in args.levels.split(",")])
    else:
        memory(args.episodes)


if __name__ == "__main__":
    main()
