"""The one reader of a run folder ``runs/<id>/``: its file names, its manifest, the latest result per episode.

``episodes.jsonl`` is a history: a retried episode appears once per attempt and the last complete,
readable line wins. Every consumer (resume, table, report, examples) needs exactly that view, so it
is computed here only. A run of 10,000 episodes must not hold 10,000 transcripts at once, so
:meth:`RunFolder.latest` streams in two passes: the first notes where each episode's lines start
(an id is found without parsing the line), the second parses only the line that wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sandbox.results import EpisodeResult

if TYPE_CHECKING:
    import pandas as pd

# An EpisodeResult line names its own id before any nested object (the transcript, judgements) can.
# Inside a JSON string a quote is escaped, so this cannot match within another value.
_EPISODE_ID = re.compile(rb'"episode_id"\s*:\s*"([^"\\]+)"')


class NotARunFolderError(ValueError):
    """The folder holds no run; the message is one line naming the folder and what is missing."""


@dataclass(frozen=True)
class RunFolder:
    """Reads ``runs/<id>/``; writing stays with :class:`sandbox.store.RunStore` (one writer, locked)."""

    path: Path

    EPISODES = "episodes.jsonl"
    MANIFEST = "manifest.json"
    TABLE = "results.parquet"
    TABLE_CSV = "results.csv"
    REPORT_MD = "report.md"
    REPORT_HTML = "report.html"
    LOG = "run.log"
    EXAMPLES = "examples"
    LOCK = ".lock"

    def __init__(self, path: Path | str) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def of(cls, folder: RunFolder | Path | str) -> RunFolder:
        """Accept a folder however the caller holds it."""
        return folder if isinstance(folder, RunFolder) else cls(folder)

    @property
    def episodes_path(self) -> Path:
        return self.path / self.EPISODES

    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def table_path(self) -> Path:
        return self.path / self.TABLE

    @property
    def report_md_path(self) -> Path:
        return self.path / self.REPORT_MD

    @property
    def report_html_path(self) -> Path:
        return self.path / self.REPORT_HTML

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def examples_dir(self) -> Path:
        return self.path / self.EXAMPLES

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    def is_run(self) -> bool:
        """A run writes its manifest before its first episode, so the manifest marks a run folder."""
        return self.manifest_path.is_file()

    def problem(self) -> str | None:
        """Why this is not a run folder, as one line naming it; None when it is one."""
        if not self.path.is_dir():
            return f"{self.path}: no such folder; not a run folder"
        if not self.is_run():
            return f"{self.path}: no {self.MANIFEST}; not a run folder"
        return None

    def require(self) -> RunFolder:
        """This folder, or :class:`NotARunFolderError` with :meth:`problem`'s line."""
        problem = self.problem()
        if problem is not None:
            raise NotARunFolderError(problem)
        return self

    def manifest(self) -> dict[str, Any]:
        """The run's manifest; a folder without one raises :class:`NotARunFolderError`."""
        self.require()
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NotARunFolderError(f"{self.manifest_path}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict):
            raise NotARunFolderError(f"{self.manifest_path}: the manifest is not a JSON object")
        return manifest

    def history(self) -> Iterator[EpisodeResult]:
        """Every complete, readable line in file order, retries included; torn or corrupt lines are skipped."""
        for _, line in self._lines():
            result = _parse(line)
            if result is not None:
                yield result

    def latest(self, ids: Collection[str] | None = None) -> Iterator[EpisodeResult]:
        """The last readable line of each episode (of ``ids`` only, if given), in order of first appearance.

        Holds one result at a time plus a few integers per line, never the whole history.
        """
        offsets = self._offsets(ids)
        if not offsets:
            return
        with self.episodes_path.open("rb") as handle:
            for candidates in offsets.values():
                for offset in reversed(candidates):  # a corrupt last line yields to the one before it
                    handle.seek(offset)
                    result = _parse(handle.readline())
                    if result is not None and result.episode_id in offsets:
                        yield result
                        break

    def latest_ids(self) -> list[str]:
        """The episode ids with at least one line, in order of first appearance (no line is parsed)."""
        return list(self._offsets(None))

    def table(self) -> pd.DataFrame:
        """The tidy results table (see :mod:`sandbox.table`), built from :meth:`latest`."""
        from sandbox.table import results_frame

        return results_frame(self)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """(offset, line) of each complete line; a last line without its newline is still being written."""
        if not self.episodes_path.is_file():
            return
        with self.episodes_path.open("rb") as handle:
            offset = 0
            for line in handle:
                if not line.endswith(b"\n"):
                    return
                yield offset, line
                offset += len(line)

    def _offsets(self, ids: Collection[str] | None) -> dict[str, list[int]]:
        wanted = set(ids) if ids is not None else None
        offsets: dict[str, list[int]] = {}
        for offset, line in self._lines():
            found = _EPISODE_ID.search(line)
            if found is not None:
                episode_id = found.group(1).decode("utf-8", "replace")
            else:  # written some other way: parse it to learn its id (or skip it, if unreadable)
                result = _parse(line)
                if result is None:
                    continue
                episode_id = result.episode_id
            if wanted is None or episode_id in wanted:
                offsets.setdefault(episode_id, []).append(offset)
        return offsets


def _parse(line: bytes) -> EpisodeResult | None:
    try:
        return EpisodeResult.model_validate_json(line)
    except ValidationError:
        return None
