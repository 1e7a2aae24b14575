"""The fault suite's summary: runs the fault, crash, bad-input, secrets and judge-manipulation tests
and prints the figures they measured, in one place.

    python bench/fault_summary.py

The tests hold the guarantees (each asserts its figure); this script only collects what they print,
so the summary and the suite cannot drift apart. Takes about two and a half minutes on 2 cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS = [
    "tests/test_faults.py",
    "tests/test_experiment.py::test_sigkill_then_resume_gives_every_episode_exactly_once",
    "tests/test_experiment.py::test_two_processes_on_one_run_folder_one_refuses",
    "tests/test_experiment.py::test_two_processes_resuming_one_killed_run_at_once",
    "tests/test_experiment.py::test_torn_last_line_is_trimmed_on_resume",
    "tests/test_bad_input.py",
    "tests/test_secrets.py",
    "tests/test_calibration.py::test_calibration_of_the_embedded_judge_replays_offline",
]

FIGURES = [
    ("fault alone (30 % over 40 episodes)", re.compile(r"^(429|500|503|timeout|reset|malformed|junk|empty): .*")),
    ("all faults mixed (20 % over 200 judged episodes)", re.compile(r"^(mixed faults|episodes \d+, succeeded).*")),
    ("SIGKILL at a random moment, then --resume", re.compile(r"^SIGKILL after .*")),
    (
        "two processes on one run folder",
        re.compile(r"^(two processes (on one run folder|resuming)|the results file: ).*"),
    ),
    ("bad input (hypothesis)", re.compile(r"^bad-input cases tried.*")),
    ("secrets", re.compile(r"^scanned \d+ files.*")),
    ("judge manipulation (embedded judge, calibration replay)", re.compile(r"^attack success rate.*")),
    ("pytest", re.compile(r"^(=+ )?\d+ (passed|failed).* in [\d.]+s.*")),
]


def main() -> int:
    started = time.perf_counter()
    # -n 0: in one process, since prints from xdist workers (the default) never reach the output
    command = [sys.executable, "-m", "pytest", "-s", "-q", "-n", "0", "-p", "no:cacheprovider", *TESTS]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line.strip() for line in completed.stdout.splitlines()]
    print(f"fault suite summary ({time.perf_counter() - started:.0f} s): {' '.join(command[3:])}")
    for title, pattern in FIGURES:
        found = [line for line in lines if pattern.match(line)]
        print(f"\n{title}:")
        for line in found or ["(not printed: see the pytest output)"]:
            print(f"  {line}")
    if completed.returncode != 0:
        print("\nthe suite FAILED:\n" + "\n".join(completed.stdout.splitlines()[-40:]))
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
