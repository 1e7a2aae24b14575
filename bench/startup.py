"""Start-up: how long a `sandbox` command takes from process start to its first request, and to its end.

    python bench/startup.py [--runs 5] [--only replay,negotiate,embedded,run,cached,list] [--no-importtime]

Each command runs ``--runs`` times in a fresh interpreter; the median of each figure is printed, with
the machine's load average before and after (2 cores shared with other work move the figures).
The commands:

- ``replay``: ``sandbox negotiate`` replaying ``cassettes/negotiate-assertive-haggler.yaml`` (12
  recorded calls on the embedded model's profile; no server, no network);
- ``negotiate``: the same negotiation (6 turns) against the loopback fake provider, an OpenAI-compatible
  ``api_base`` profile (``--model openai/bench --api-base ...``), answering at once;
- ``embedded``: the same negotiation, 2 turns, on the embedded model, its server started by the command
  (time to first request includes loading the weights);
- ``run``: ``sandbox run`` of a 2-episode spec against the loopback fake provider (an OpenAI-compatible
  ``api_base`` profile, ``--no-cache``), no judge;
- ``cached``: the same spec with every answer already in the response cache (no request is sent:
  "first call" is the first answer from the model layer);
- ``list``: ``sandbox list``, which calls no model.

"first call" is the moment the model layer is first asked (``sandbox.models.call.complete``), "first
request" the moment the first HTTP request is handed to aiohttp, httpx or httpx2 (whichever the
transport uses; a cassette answers it on replay), both
timed from just before the process is started. Then the import breakdown of the replay command
(``python -X importtime``): the three top-level packages with the most import time (self time of all
their modules), and how many modules each brought.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CASSETTE = ROOT / "cassettes" / "negotiate-assertive-haggler.yaml"
REPLAY = ["negotiate", "--rep", "assertive-consultant", "--prospect", "price-haggler", "--scenario", "saas-seats"]
REPLAY += ["--seed", "1", "--max-turns", "6", "--cassette", str(CASSETTE)]
DEAL = {"message": "Fine, we accept.", "action": "accept", "price": None, "terms": None}

# The child: marks the first model call and the first HTTP request (hooks installed as each module is
# imported, so the hook itself imports nothing early), then runs the CLI.
CHILD = r"""
import importlib.abc, importlib.machinery, json, os, sys, time
MARKS = {}
def mark(name):
    MARKS.setdefault(name, time.time())
def patch_httpx(module):
    send = module.AsyncClient.send
    async def timed(self, *a, **k):
        mark("first_request")
        return await send(self, *a, **k)
    module.AsyncClient.send = timed
def patch_call(module):
    complete = module.complete
    async def timed(*a, **k):
        mark("first_call")
        return await complete(*a, **k)
    module.complete = timed
def patch_aiohttp(module):
    post = module.ClientSession.post
    def timed(self, *a, **k):
        mark("first_request")
        return post(self, *a, **k)
    module.ClientSession.post = timed
HOOKS = {"httpx": patch_httpx, "httpx2": patch_httpx, "aiohttp.client": patch_aiohttp}
HOOKS["sandbox.models.call"] = patch_call
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        hook = HOOKS.pop(name, None)
        if hook is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            hook(module)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Finder())
import atexit
atexit.register(lambda: open(os.environ["STARTUP_MARKS"], "w").write(json.dumps(MARKS)))
sys.argv = ["sandbox", *sys.argv[1:]]
from sandbox.cli import app
app()
"""


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def timed_run(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float | None]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as marks_file:
        marks_path = Path(marks_file.name)
    started = time.time()
    completed = subprocess.run(
        [PYTHON, "-c", CHILD, *args], cwd=cwd, env=env | {"STARTUP_MARKS": str(marks_path)}, capture_output=True
    )
    ended = time.time()
    marks = json.loads(marks_path.read_text() or "{}") if marks_path.exists() else {}
    marks_path.unlink(missing_ok=True)
    if completed.returncode != 0:  # still timed (a model that times out on a loaded machine); said once
        last = [line for line in completed.stdout.decode().splitlines() if line.strip()][-1:]
        print(f"  (exit {completed.returncode}: {' '.join(last)[:160]})", flush=True)
    return {
        "first_call": marks["first_call"] - started if "first_call" in marks else None,
        "first_request": marks["first_request"] - started if "first_request" in marks else None,
        "wall": ended - started,
    }


def median(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):5.2f} s" if present else "    -  "


def measure(label: str, args: list[str], runs: int, cwd: Path, env: dict[str, str]) -> None:
    before = load()
    results = [timed_run(args, cwd, env) for _ in range(runs)]
    walls = " ".join(f"{r['wall']:.2f}" for r in results)
    print(
        f"{label:<9} first call {median([r['first_call'] for r in results])}, "
        f"first request {median([r['first_request'] for r in results])}, "
        f"end {median([r['wall'] for r in results])}  (median of {runs}: {walls}; load {before} -> {load()})",
        flush=True,
    )


def importtime(args: list[str], cwd: Path, env: dict[str, str], top: int = 3) -> None:
    """The replay command under ``-X importtime``: import self time summed by top-level package."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as marks_file:
        marks = marks_file.name
    completed = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", CHILD, *args],
        cwd=cwd,
        env=env | {"STARTUP_MARKS": marks},
        capture_output=True,
        text=True,
    )
    os.unlink(marks)
    by_package: dict[str, list[float]] = {}
    total = 0.0
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.removeprefix("import time:").split("|", 2)
        package = name.strip().split(".")[0]
        seconds = int(self_us) / 1e6
        by_package.setdefault(package, []).append(seconds)
        total += seconds
    ranked = sorted(by_package.items(), key=lambda kv: -sum(kv[1]))[:top]
    print(f"imports of `sandbox {args[0]}` (-X importtime, self time by top-level package): {total:.2f} s in all")
    for package, times in ranked:
        print(f"  {package:<12} {sum(times):5.2f} s  {len(times):4d} modules")


def spec_yaml(api_base: str) -> str:
    model = {"model": "openai/bench", "api_base": api_base}
    spec = {
        "id": "startup",
        "strategies": ["eager-to-please", "assertive-consultant"],
        "prospects": ["skeptic"],
        "scenarios": ["saas-seats"],
        "seeds": 1,
        "max_turns": 2,
        "models": {"rep": model, "prospect": model},
        "concurrency": 2,
    }
    return json.dumps(spec)  # JSON is YAML


def provider(latency: float) -> Iterator[str]:
    command = [PYTHON, "-m", "tests.fake_provider", "--delay", str(latency), "--content", json.dumps(DEAL)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="replay,negotiate,embedded,run,cached,list")
    parser.add_argument("--no-importtime", action="store_true")
    args = parser.parse_args()
    which = args.only.split(",")
    env = dict(os.environ)
    env.pop("SANDBOX_RECORD", None)
    env["PYTHONPATH"] = str(ROOT)  # this tree's sandbox, whichever folder a command runs in
    env.setdefault("OPENAI_API_KEY", "sk-test-startup-not-a-real-key")
    print(f"start-up, {os.cpu_count()} cores, Python {sys.version.split()[0]}, median of {args.runs} runs each")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        live = REPLAY[: REPLAY.index("--cassette")]
        if "replay" in which:
            measure("replay", [*REPLAY, "--out", str(folder / "t.json")], args.runs, ROOT, env)
        if "embedded" in which:
            embedded = [*live[: live.index("--max-turns")], "--max-turns", "2", "--out", str(folder / "e.json")]
            measure("embedded", embedded, args.runs, ROOT, env)
        if {"negotiate", "run", "cached"} & set(which):
            gen = provider(0.0)
            api_base = next(gen)
            try:
                if "negotiate" in which:
                    remote = [*live, "--model", "openai/bench", "--api-base", api_base, "--out", str(folder / "n.json")]
                    measure("negotiate", remote, args.runs, ROOT, env)
                spec = folder / "spec.yaml"
                spec.write_text(spec_yaml(api_base))
                base = ["run", str(spec), "--personas", str(ROOT / "personas")]
                if "run" in which:
                    measure("run", [*base, "--no-cache", "--runs-dir", str(folder / "runs")], args.runs, folder, env)
                if "cached" in which:
                    cached = [*base, "--cache-dir", str(folder / "cache")]
                    timed_run([*cached, "--runs-dir", str(folder / "warm")], folder, env)  # fills the cache
                    measure("cached", [*cached, "--runs-dir", str(folder / "runs-cached")], args.runs, folder, env)
            finally:
                gen.close()
        if "list" in which:
            measure("list", ["list"], args.runs, ROOT, env)
        if not args.no_importtime:
            importtime([*REPLAY, "--out", str(folder / "i.json")], ROOT, env)


if __name__ == "__main__":
    main()
