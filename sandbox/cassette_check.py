"""Whether today's code would still replay each cassette, and pruning what nothing reads.

``sandbox cassettes check`` re-runs the tests that recorded a folder's cassettes (the pytest plugin
notes the recording test in each cassette's metadata) in a subprocess, offline, with
``SANDBOX_CASSETTE_CHECK`` set: every replay then collects its misses instead of failing on the first
(:mod:`sandbox.cassettes`) and logs what it read. From those logs each cassette is

- **fresh**: every request its test sent today was recorded (unread interactions are counted);
- **stale**: some request was not, with the first field of the body that differs from the nearest
  recording (the system prompt, a message, the model, the schema, ...);
- **unused**: its test no longer exists, or passed without reading it;
- **unchecked**: its test was skipped, deselected (``-m`` or ``-k`` in the project's options) or
  failed before reading it, or no recording test is noted in it (recorded by hand or before the
  plugin): nothing says whether it still replays.

Each test's outcome comes from this module itself, loaded into the re-run as a plugin (``-p``): it
logs every test's reports next to the read logs. ``prune`` removes the interactions of fresh
cassettes that a passing test did not read, and the files of unused ones; unchecked ones are kept.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sandbox.cassettes import CHECK_ENV, RECORD_ENV, read_cassette, write_cassette

State = Literal["fresh", "stale", "unused", "unchecked", "error"]


@dataclass(frozen=True)
class Verdict:
    """One cassette's state today and why."""

    path: Path
    state: State
    detail: str
    interactions: int = 0
    unread: tuple[int, ...] = ()  # indices no test read (fresh cassettes only)
    test: str | None = None

    def line(self) -> str:
        return f"{self.state:<9} {self.path}: {self.detail}"


@dataclass
class _Reads:
    played: set[int] = field(default_factory=set)
    misses: list[dict[str, object]] = field(default_factory=list)
    requests: int = 0


def cassette_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.yaml") if p.is_file())


def recorder_of(path: Path) -> tuple[Path, str] | None:
    """The rootdir and node id of the test that recorded ``path``, as the plugin noted them."""
    _, _, metadata = read_cassette(path)
    noted = metadata.get("recorded_by") if isinstance(metadata, dict) else None
    if not isinstance(noted, dict) or not noted.get("test"):
        return None
    return (path.parent / str(noted.get("rootdir", "."))).resolve(), str(noted["test"])


_NOT_FOUND = re.compile(r"ERROR: (?:file or directory )?not found: (\S+)")  # pytest writes the path absolute


Outcome = Literal["passed", "failed", "skipped", "deselected"]


def _log_outcome(test: str, outcome: str) -> None:
    folder = Path(os.environ[CHECK_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"outcomes-{os.getpid()}.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps({"test": test, "outcome": outcome}) + "\n")


def pytest_runtest_logreport(report: Any) -> None:
    """In the re-run (this module as a plugin): each phase's outcome of each test, for its verdicts."""
    if os.environ.get(CHECK_ENV):
        _log_outcome(report.nodeid, report.outcome)


def pytest_deselected(items: list[Any]) -> None:
    if os.environ.get(CHECK_ENV):
        for item in items:
            _log_outcome(item.nodeid, "deselected")


def _read_outcomes(log: Path) -> dict[str, Outcome]:
    """Each test's outcome: deselected, else failed if a phase failed, else skipped if one was."""
    phases: dict[str, set[str]] = defaultdict(set)
    for part in sorted(log.glob("outcomes-*.jsonl")):
        for raw in part.read_text(encoding="utf-8").splitlines():
            entry = json.loads(raw)
            phases[entry["test"]].add(entry["outcome"])
    order: tuple[Outcome, ...] = ("deselected", "failed", "skipped", "passed")
    return {test: next(o for o in order if o in seen) for test, seen in phases.items() if seen & set(order)}


def _run_tests(rootdir: Path, tests: list[str], log: Path) -> tuple[set[str], str | None]:
    """Run ``tests`` under ``rootdir`` with replays collecting; the node ids pytest did not find, and a
    problem that stopped the run (an unusable run, not failing tests)."""
    env = {k: v for k, v in os.environ.items() if k != RECORD_ENV} | {CHECK_ENV: str(log)}
    missing: set[str] = set()
    todo = list(tests)
    while todo:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", __name__, *todo]
        done = subprocess.run(command, cwd=rootdir, env=env, capture_output=True, text=True)
        found = _NOT_FOUND.findall(done.stdout + done.stderr)
        gone = {t for t in todo if any(f == t or f.endswith("/" + t) for f in found)}
        if done.returncode == 4 and gone:  # pytest runs nothing when a node id is missing: drop them, again
            missing |= gone
            todo = [t for t in todo if t not in gone]
            continue
        if done.returncode not in (0, 1, 5):  # 1: some tests failed (the tests' business); 5: all deselected
            tail = " ".join((done.stdout + done.stderr).split())[-300:]
            return missing, f"pytest exited with status {done.returncode} in {rootdir}: {tail}"
        break
    return missing, None


def _read_logs(log: Path) -> dict[Path, _Reads]:
    reads: dict[Path, _Reads] = defaultdict(_Reads)
    for part in sorted(log.glob("reads-*.jsonl")):
        for raw in part.read_text(encoding="utf-8").splitlines():
            entry = json.loads(raw)
            seen = reads[Path(entry["cassette"])]
            seen.played |= set(entry["played"])
            seen.misses += entry["misses"]
    return reads


_NOT_PASSED = {
    "failed": "failed before reading it",
    "skipped": "was skipped",
    "deselected": "was deselected (-m or -k in the project's options)",
    None: "did not run",
}


def _verdict(path: Path, test: str, reads: _Reads | None, total: int, outcome: Outcome | None) -> Verdict:
    if reads is None and outcome == "passed":
        return Verdict(path, "unused", f"{test} passed without reading it", total, test=test)
    if reads is None:
        return Verdict(path, "unchecked", f"its test {test} {_NOT_PASSED[outcome]}", total, test=test)
    if reads.misses:
        first = reads.misses[0]
        where = f"interaction {int(first['nearest']) + 1} of {total}" if first.get("nearest") is not None else "none"
        differs = first.get("differs") or "a request the cassette has no recording for"
        return Verdict(
            path,
            "stale",
            f"{differs} (nearest recording: {where}; {len(reads.misses)} request(s) not recorded; test {test})",
            total,
            test=test,
        )
    unread = tuple(i for i in range(total) if i not in reads.played)
    read = f"all {total} interactions read" if not unread else f"{len(unread)} of {total} interactions unread"
    if outcome != "passed":  # it may have stopped before reading the rest: prune keeps them
        return Verdict(path, "fresh", f"{read} (test {test}, which {outcome or 'did not finish'})", total, test=test)
    return Verdict(path, "fresh", f"{read} (test {test})", total, unread, test)


def check(folder: Path) -> list[Verdict]:
    """A verdict per cassette under ``folder``, each recorder's tests re-run once, offline."""
    files = cassette_files(folder)
    recorders: dict[Path, tuple[Path, str] | None] = {}
    verdicts: dict[Path, Verdict] = {}
    for path in files:
        try:
            recorders[path] = recorder_of(path)
        except Exception as exc:  # a file that is not a cassette
            verdicts[path] = Verdict(path, "error", f"not a readable cassette: {type(exc).__name__}: {exc}")
    by_root: dict[Path, list[Path]] = defaultdict(list)
    for path, recorder in recorders.items():
        if recorder is None:
            verdicts[path] = Verdict(path, "unchecked", "no recording test noted in it (not recorded by the plugin)")
        else:
            by_root[recorder[0]].append(path)
    for rootdir, paths in sorted(by_root.items()):
        tests = sorted({recorders[p][1] for p in paths})  # type: ignore[index]
        with tempfile.TemporaryDirectory(prefix="sandbox-check-") as log:
            missing, problem = _run_tests(rootdir, tests, Path(log))
            reads = _read_logs(Path(log))
            outcomes = _read_outcomes(Path(log))
        for path in paths:
            test = recorders[path][1]  # type: ignore[index]
            total = len(read_cassette(path)[0])
            if problem is not None:
                verdicts[path] = Verdict(path, "error", problem, total, test=test)
            elif test in missing:
                verdicts[path] = Verdict(path, "unused", f"its test {test} no longer exists", total, test=test)
            else:
                verdicts[path] = _verdict(path, test, reads.get(path.resolve()), total, outcomes.get(test))
    return [verdicts[p] for p in files]


@dataclass(frozen=True)
class Pruned:
    path: Path
    removed: int  # interactions removed; the whole file when ``deleted``
    deleted: bool

    def line(self) -> str:
        if self.deleted:
            return f"removed   {self.path} (nothing reads it)"
        return f"pruned    {self.path}: removed {self.removed} interaction(s) no test reads"


def prune(verdicts: Iterable[Verdict]) -> list[Pruned]:
    """Drop the unread interactions of fresh cassettes and the files of unused ones (their metadata
    kept); stale, unchecked and unreadable cassettes are left alone."""
    done: list[Pruned] = []
    for verdict in verdicts:
        if verdict.state == "unused":
            verdict.path.unlink()
            done.append(Pruned(verdict.path, verdict.interactions, True))
        elif verdict.state == "fresh" and verdict.unread:
            requests, responses, metadata = read_cassette(verdict.path)
            keep = [i for i in range(len(requests)) if i not in set(verdict.unread)]
            write_cassette(verdict.path, [requests[i] for i in keep], [responses[i] for i in keep], metadata)
            done.append(Pruned(verdict.path, len(verdict.unread), False))
    return done
