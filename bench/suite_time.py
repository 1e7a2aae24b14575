"""Wall time of the test suite as CI runs it: `python -m pytest -q`, so in parallel with the options in
pyproject.toml (pytest-xdist, ``-n 2 --dist loadfile``). By default the offline suite: everything but
the two tests that start the embedded model server (marker ``server``), so no model runs; model
traffic is replayed from cassettes or answered by the loopback fake provider.

    python bench/suite_time.py [--durations 10] [--workers N | --serial] [--all]

``--serial`` runs in one process (``-n 0``), ``--workers N`` on N workers, ``--all`` includes the
server tests (the whole of what CI runs). Prints the wall time, the pass count, the slowest tests, and
the machine's load average before and after, since other work on a 2-core machine moves the figure.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def reference_seconds() -> float:
    """One core's speed on a fixed pure-Python workload (best of 3), printed beside the wall time: the same
    suite took 136.5 s on one 2-core machine and 52.6 s on another, so a figure means little without it."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durations", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None, help="pytest-xdist workers (default: pyproject's)")
    parser.add_argument("--serial", action="store_true", help="one process: -n 0")
    parser.add_argument("--all", action="store_true", help="include the embedded-server tests, as CI does")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--durations={args.durations}"]
    if not args.all:
        command += ["-m", "not server"]
    if args.serial or args.workers is not None:
        command += ["-n", "0" if args.serial else str(args.workers)]
    what = "whole suite" if args.all else "offline suite (-m 'not server')"
    how = "serial" if args.serial else f"-n {args.workers}" if args.workers is not None else "pyproject's -n"
    reference = reference_seconds()
    before = load()
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    lines = completed.stdout.splitlines()
    counts = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)), "(no summary)")
    print(f"{what}, {how}: wall {wall:.1f} s on {os.cpu_count()} cores; {counts.strip('= ')}")
    print(f"load average (1/5/15 min) before {before}, after {load()}; reference workload {reference:.3f} s")
    slow = [line for line in lines if re.match(r"^\d+\.\d+s (call|setup|teardown)", line)]
    if slow:
        print(f"slowest {len(slow)}:")
        for line in slow:
            print(f"  {line}")
    if completed.returncode != 0:
        print("\n".join(lines[-30:]))
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
