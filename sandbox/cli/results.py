"""The results side: ``sandbox export``, ``report``, ``examples`` and ``view``, all reading a finished run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sandbox.cli.common import (
    ApiBaseOpt,
    CassetteOpt,
    NoPreflightOpt,
    PersonasOpt,
    RecordOpt,
    RubricOpt,
    RunFolderArg,
    app,
    console,
    fail,
    model_settings,
    open_catalog,
    open_rubric,
    open_run,
)


@app.command("export")
def export_command(
    run: RunFolderArg,
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv, or chat (dialogues as chat JSONL).")] = "parquet",
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    side: Annotated[
        str | None, typer.Option("--side", help="chat: whose seat the dialogue is seen from, rep or prospect.")
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="chat: only dialogues whose verified rubric mean is at least this."),
    ] = None,
) -> None:
    """Write the tidy results table (one row per episode x judge model), or the dialogues as chat JSONL."""
    if fmt not in {"parquet", "csv", "chat"}:
        fail(f"--format must be parquet, csv or chat, not '{fmt}'")
    open_run(run)
    if fmt == "chat":
        from sandbox.export_chat import export_chat

        if side not in (None, "rep", "prospect"):
            fail(f"--side must be rep or prospect, not '{side}'")
        summary = export_chat(run, side or "rep", min_score, out)  # type: ignore[arg-type]
        left = "; ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items()))
        console.print(f"written {summary.lines} dialogues to {summary.path}" + (f" (left out: {left})" if left else ""),
                      soft_wrap=True)  # fmt: skip
        return
    if side is not None or min_score is not None:
        fail("--side and --min-score apply to --format chat only")
    from sandbox.table import export

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
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN] [STRATEGY]", help="A run folder; after --contrast A, the second strategy B may follow."
        ),
    ] = None,
    by: Annotated[
        str, typer.Option("--by", help="Column to rank by: score_mean, score_<criterion> or m_<metric>.")
    ] = "score_mean",
    per_strategy: Annotated[int, typer.Option("--per-strategy", min=1, help="Highest and lowest N each.")] = 1,
    contrast: Annotated[
        list[str] | None,
        typer.Option(
            "--contrast",
            help="RUN --contrast A B: two strategies on matched episodes; with --rep: the one to pair it with.",
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, max=100, help="Pairs to show (default 3), or seeds to play (5).")
    ] = None,
    rep: Annotated[str | None, typer.Option("--rep", help="Fresh examples: the strategy playing the rep.")] = None,
    prospect: Annotated[str | None, typer.Option("--prospect", help="Fresh examples: the prospect.")] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Fresh examples: the scenario.")] = None,
    model: Annotated[
        str, typer.Option("--model", help="Fresh examples: model for both sides and the judge.")
    ] = "local",
    api_base: ApiBaseOpt = None,
    judge_model: Annotated[
        list[str] | None, typer.Option("--judge-model", help="Fresh examples: judge model(s); default --model.")
    ] = None,
    max_turns: Annotated[int, typer.Option("--max-turns", min=2, max=200, help="Fresh examples: turn limit.")] = 12,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Fresh examples: where the run folder goes.")] = Path(
        "runs"
    ),
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Fresh examples: continue this run folder (started with the same flags)."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the local response cache.")] = False,
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Response cache folder.")] = Path(".sandbox-cache"),
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print the pack to PDF with headless Chromium.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write (default: RUN/examples, its contrast/ or fresh/ for those packs)."),
    ] = None,
    cassette: CassetteOpt = None,
    record: RecordOpt = False,
    rubric: RubricOpt = None,
    personas: PersonasOpt = None,
    no_preflight: NoPreflightOpt = False,
) -> None:
    """Example dialogues for trainers, as packs (Markdown + printable HTML): each strategy's best and
    worst (RUN), two strategies on the same conversations (RUN --contrast A B), or fresh episodes played
    now through the runner (--rep S --prospect P --scenario C [--contrast S2])."""
    from sandbox.examples import ExamplesError, check_by

    targets = list(targets or [])
    contrast = list(contrast or [])
    loaded_rubric = open_rubric(rubric)
    try:
        if rep is not None or prospect is not None or scenario is not None:
            if targets:
                fail(f"fresh examples (--rep) take no run folder or strategy argument, got: {' '.join(targets)}")
            check_by(by, loaded_rubric)  # before anything is played, not after
            folder = _fresh_run(
                rep, prospect, scenario, contrast, count or 5, model, api_base, judge_model, max_turns, runs_dir,
                resume, None if no_cache else cache_dir, cassette, record, loaded_rubric, personas, no_preflight,
            )  # fmt: skip
            if contrast:  # every matched pair of the seeds just played, most different first
                _write_pack(folder, "contrast", contrast=(rep, contrast[0]), by=by, count=count or 5, out=out,
                            rubric=loaded_rubric, pdf=pdf)  # fmt: skip
            else:
                _write_pack(folder, "fresh", out=out, rubric=loaded_rubric, pdf=pdf)
            return
        if resume is not None:
            fail("--resume continues fresh examples: give it with the same --rep, --prospect and --scenario")
        if not targets:
            fail(
                "name a run folder (sandbox examples RUN), or ask for fresh examples with --rep, --prospect, --scenario"
            )
        run, extra = Path(targets[0]), targets[1:]
        open_run(run)
        if extra and not contrast:
            fail(f"unexpected argument(s) after the run folder: {' '.join(extra)} (did you mean --contrast A B?)")
        if contrast:
            strategies = contrast + extra
            if len(strategies) != 2:
                fail(f"--contrast takes two strategies (RUN --contrast A B), got {len(strategies)}")
            _write_pack(run, "contrast", contrast=(strategies[0], strategies[1]), by=by, count=count or 3, out=out,
                        rubric=loaded_rubric, pdf=pdf)  # fmt: skip
            return
        _write_pack(run, "best-worst", by=by, per_strategy=per_strategy, out=out, rubric=loaded_rubric, pdf=pdf)
    except ExamplesError as exc:
        fail(f"{targets[0] if targets else 'examples'}: {exc}")


def _write_pack(folder: Path, kind: str, **options) -> None:  # noqa: ANN003
    """Write the pack of one kind and print what was picked and where the files are (paths whole)."""
    from sandbox.examples import write_contrast, write_examples, write_fresh
    from sandbox.packs import PdfError

    try:
        if kind == "best-worst":
            target, picks = write_examples(folder, **options)
            table = Table(title=f"Examples by {options['by']}")
            for column in ("strategy", "picked as", "episode"):
                table.add_column(column)
            for pick in picks:
                table.add_row(pick.strategy, pick.why, pick.episode_id)
            console.print(table)
            console.print(f"written {len(picks)} dialogues and an index: {target / 'README.md'}", soft_wrap=True)
            written = [target / "pack.md", target / "pack.html"] + ([target / "pack.pdf"] if options["pdf"] else [])
        elif kind == "contrast":
            a, b = options.pop("contrast")
            written, pairs = write_contrast(folder, a, b, **options)
            table = Table(title=f"{a} vs {b} by {options['by']}: matched pairs, most different first")
            for column in ("prospect / scenario, seed, opener", a, b, "difference"):
                table.add_column(column)
            for pair in pairs:
                m = pair.match
                where = f"{m.get('prospect')} / {m.get('scenario')}, seed {m.get('seed')}, {m.get('opener')}"
                table.add_row(where, f"{pair.a_value:.2f}", f"{pair.b_value:.2f}", f"{pair.difference:+.2f}")
            console.print(table)
        else:
            written = write_fresh(folder, **options)
    except PdfError as exc:
        for path in exc.written:
            console.print(f"pack: {path}", soft_wrap=True)
        fail(str(exc))
        return
    for path in written:
        console.print(f"pack: {path}", soft_wrap=True)


def _fresh_run(
    rep, prospect, scenario, contrast, count, model, api_base, judge_model, max_turns, runs_dir, resume,
    cache_dir, cassette, record, rubric, personas, no_preflight,
) -> Path:  # fmt: skip  # noqa: ANN001
    """Play the fresh examples through the one run entry point (cached, judged; ``resume`` continues a run
    folder of the same flags, a different spec refused by the runner); its folder."""
    from pydantic import ValidationError

    from sandbox.catalog import CatalogError, describe_validation_error
    from sandbox.cli.run import run_or_fail
    from sandbox.examples import fresh_spec

    missing = [
        flag for flag, value in (("--rep", rep), ("--prospect", prospect), ("--scenario", scenario)) if not value
    ]
    if missing:
        fail(f"fresh examples need --rep, --prospect and --scenario; missing {', '.join(missing)}")
    if len(contrast) > 1:
        fail(f"with --rep, --contrast names one strategy to pair it with, got {len(contrast)}")
    catalog = open_catalog(personas)
    try:
        for strategy in [rep, *contrast]:
            catalog.strategy(strategy)
        catalog.prospect(prospect)
        catalog.scenario(scenario)
        settings = model_settings(model, api_base)
        judges = [model_settings(m, api_base) for m in judge_model] if judge_model else None
        spec = fresh_spec(rep, prospect, scenario, count, settings, contrast[0] if contrast else None, judges,
                          max_turns)  # fmt: skip
    except CatalogError as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))
    if record and cassette is None:
        fail("--record needs --cassette PATH")
    console.print(
        f"playing {len(spec.strategies) * count} episodes: {' and '.join(spec.strategies)} x seeds 1..{count}"
        + (f" (resuming {resume}: finished ones are kept)" if resume is not None else ""),
        soft_wrap=True,
    )
    outcome = run_or_fail(spec, catalog, rubric, progress=False, runs_dir=runs_dir, resume=resume,
                          cache_dir=cache_dir, cassette=cassette, record=record, report=False,
                          preflight=not no_preflight)  # fmt: skip
    console.print(f"run folder: {outcome.folder}", soft_wrap=True)
    if outcome.summary.failed:
        console.print(f"[yellow]{outcome.summary.failed} episode(s) failed; the pack shows them as failed[/]")
    return outcome.folder


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
