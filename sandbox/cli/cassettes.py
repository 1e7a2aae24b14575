"""``sandbox cassettes check`` and ``prune``: which recorded cassettes today's code still replays."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sandbox.cli.common import App, Group, console, fail

cassettes_app = App(
    cls=Group, no_args_is_help=True, help="Check that recorded cassettes still replay; prune what no test reads."
)

FolderArg = Annotated[Path, typer.Argument(help="A folder of cassettes (searched recursively).")]
_STYLE = {"fresh": "green", "stale": "red", "unused": "yellow", "unchecked": "dim", "error": "red"}


def _verdicts(folder: Path):  # noqa: ANN202
    from sandbox.cassette_check import check

    if not folder.is_dir():
        fail(f"{folder}: folder not found")
    verdicts = check(folder)
    if not verdicts:
        fail(f"{folder}: no cassettes (*.yaml) in it")
    return verdicts


@cassettes_app.command("check")
def check_command(folder: FolderArg = Path("cassettes")) -> None:
    """Re-run the tests that recorded each cassette, offline, and print one line per cassette: fresh,
    stale (with the first field that differs), unused, or unchecked (its test skipped, deselected or
    failed before reading it). Exit status 1 when any is stale."""
    verdicts = _verdicts(folder)
    for verdict in verdicts:
        state = f"[{_STYLE[verdict.state]}]{verdict.state:<9}[/]"
        console.print(f"{state} {escape(str(verdict.path))}: {escape(verdict.detail)}", soft_wrap=True)
    states = [v.state for v in verdicts]
    console.print(", ".join(f"{states.count(s)} {s}" for s in _STYLE if states.count(s)))
    if "error" in states:
        raise typer.Exit(2)
    if "stale" in states:
        raise typer.Exit(1)


@cassettes_app.command("prune")
def prune_command(folder: FolderArg = Path("cassettes")) -> None:
    """Remove the interactions no test reads from fresh cassettes, and the cassettes nothing reads."""
    from sandbox.cassette_check import prune

    verdicts = _verdicts(folder)
    done = prune(verdicts)
    for item in done:
        console.print(escape(item.line()), soft_wrap=True)
    for verdict in verdicts:
        if verdict.state in ("stale", "error"):
            console.print(f"kept      {escape(str(verdict.path))}: {verdict.state}; re-record it first", soft_wrap=True)
        elif verdict.state == "unchecked":
            console.print(f"kept      {escape(str(verdict.path))}: {escape(verdict.detail)}", soft_wrap=True)
    if not done:
        console.print("nothing to prune")
