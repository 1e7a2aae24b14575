"""Writing a run folder: ``manifest.json`` plus ``episodes.jsonl``, one flushed line per finished episode.

Appending one line per episode means a run killed at any moment loses at most the line being
written; reading tolerates (and the next writer trims) a torn last line. A file lock keeps two
processes from writing the same run. Reading is :class:`sandbox.runfolder.RunFolder`'s job.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from sandbox.results import EpisodeResult
from sandbox.runfolder import RunFolder

PACKAGES = ["negotiation-sandbox", "litellm", "openai", "pydantic", "xllamacpp", "vcrpy", "tenacity"]


class RunLockedError(RuntimeError):
    """Another process is writing this run folder."""


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "cpu_count": os.cpu_count(),
    }


def new_run_id(spec_id: str) -> str:
    return f"{spec_id}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


class RunStore:
    """The run folder, held by one process at a time (file lock).

    Results go to ``episodes.jsonl`` one line per episode, fsynced before the episode counts as done.
    The write happens on one writer thread (``append_async``): appends stay in order and whole, and
    the event loop keeps serving model calls during the fsync instead of stalling every worker.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.run = RunFolder(self.folder)
        self._lock = FileLock(str(self.run.lock_path), timeout=0)
        self._handle: BinaryIO | None = None
        self._writer: ThreadPoolExecutor | None = None

    @property
    def episodes_path(self) -> Path:
        return self.run.episodes_path

    @property
    def manifest_path(self) -> Path:
        return self.run.manifest_path

    def __enter__(self) -> RunStore:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunLockedError(f"{self.folder} is being written by another sandbox process") from None
        self._trim_torn_line()
        self._handle = self.episodes_path.open("ab")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-store")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            if self._handle is not None:
                self._handle.close()
        finally:
            self._writer = self._handle = None
            self._lock.release()

    def write_manifest(self, manifest: dict[str, object]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        tmp.replace(self.manifest_path)

    def _trim_torn_line(self) -> None:
        path = self.episodes_path
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            handle.truncate(data.rfind(b"\n") + 1)

    def append(self, result: EpisodeResult) -> None:
        if self._handle is None:
            raise RuntimeError("RunStore.append outside its `with` block")
        self._handle.write((result.model_dump_json() + "\n").encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    async def append_async(self, result: EpisodeResult) -> None:
        if self._writer is None:
            raise RuntimeError("RunStore.append_async outside its `with` block")
        await asyncio.get_running_loop().run_in_executor(self._writer, self.append, result)


def read_results(folder: Path | str) -> Iterator[EpisodeResult]:
    """Every complete line, in order (the history); kept for callers of the old name."""
    return RunFolder(folder).history()


def latest_results(folder: Path | str) -> dict[str, EpisodeResult]:
    """The last line per episode id, all in memory; prefer ``RunFolder(folder).latest()``, which streams."""
    return {result.episode_id: result for result in RunFolder(folder).latest()}
