"""Wall time of the offline test suite: everything except the two tests that start the embedded model
server (marker ``server``), so no model runs; model traffic is replayed from cassettes or answered by
the loopback fake provider.

    python bench/suite_time.py [--durations 10]

Prints the wall time, the pass count, and the slowest tests.
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durations", type=int, default=10)
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not server", "-p", "no:cacheprovider"]
    command += [f"--durations={args.durations}"]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    lines = completed.stdout.splitlines()
    counts = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)), "(no summary)")
    print(f"offline suite (pytest -m 'not server'): wall {wall:.1f} s on {os.cpu_count()} cores; {counts.strip('= ')}")
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
