"""The results side: ``sandbox export``, ``report``, ``examples`` and ``view``, all reading a finished run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sandbox.cli.common import RunFolderArg, app, console, fail, open_run


@app.command("export")
def export_command(
    run: RunFolderArg,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
) -> None:
    """Write the tidy results table (one row per episode x judge model)."""
    from sandbox.table import export

    if fmt not in {"parquet", "csv"}:
        fail(f"--format must be parquet or csv, not '{fmt}'")
    open_run(run)
    target = export(run, fmt, out)  # type: ignore[arg-type]
    console.print(f"written {target}")


@app.command("report")
def report_command(
    run: RunFolderArg,
    screenshot: Annotated[
        bool, typer.Option("--screenshot", help="Also save report.png, taken in headless Chromium.")
    ] = False,
) -> None:
    """Write report.md and a self-contained report.html for a run."""
    from sandbox.report import screenshot as take_screenshot
    from sandbox.report import write_report

    open_run(run)
    md, html = write_report(run)
    console.print(f"written {md} and {html}")
    if screenshot:
        try:
            png = take_screenshot(html)
        except RuntimeError as exc:
            fail(str(exc))
        console.print(f"written {png}")


@app.command("examples")
def examples_command(
    run: RunFolderArg,
    by: Annotated[
        str, typer.Option("--by", help="Column to rank by: score_mean, score_<criterion> or m_<metric>.")
    ] = "score_mean",
    per_strategy: Annotated[int, typer.Option("--per-strategy", min=1, help="Highest and lowest N each.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write (default: RUN/examples).")] = None,
) -> None:
    """Write example dialogues for trainers: each strategy's best and worst episodes, as Markdown."""
    from sandbox.examples import ExamplesError, write_examples

    open_run(run)
    try:
        folder, picks = write_examples(run, by=by, per_strategy=per_strategy, out=out)
    except ExamplesError as exc:
        fail(f"{run}: {exc}")
    table = Table(title=f"Examples by {by}")
    for column in ("strategy", "picked as", "episode"):
        table.add_column(column)
    for pick in picks:
        table.add_row(pick.strategy, pick.why, pick.episode_id)
    console.print(table)
    console.print(f"written {len(picks)} dialogues and an index: {folder / 'README.md'}")


@app.command("view")
def view_command(
    run: RunFolderArg,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free port).")] = 0,
) -> None:
    """Serve a run's report on 127.0.0.1 and print the address (Ctrl-C to stop)."""
    import functools
    import http.server

    from sandbox.report import write_report

    open_run(run)
    if not (run / "report.html").exists():
        write_report(run)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(run))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/report.html"
        print(f"serving {run} at {url}", flush=True)  # one unwrapped line: scripts read the address from it
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            console.print("stopped")
