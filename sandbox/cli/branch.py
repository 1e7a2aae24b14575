"""``sandbox branch``: a saved dialogue continued from one turn by another rep strategy, N times, judged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sandbox.catalog import CatalogError
from sandbox.cli.common import (
    ApiBaseOpt,
    CassetteOpt,
    NoPreflightOpt,
    PersonasOpt,
    RecordOpt,
    RubricOpt,
    app,
    console,
    fail,
    fmt,
    model_settings,
    open_catalog,
    open_rubric,
)


@app.command("branch")
def branch_command(
    transcript: Annotated[
        str, typer.Argument(help="A transcript or result JSON file (a practice session), or RUN_FOLDER#EPISODE_ID.")
    ],
    at: Annotated[int, typer.Option("--at", min=1, help="First turn the new rep says; the turns before it are kept.")],
    rep: Annotated[
        list[str], typer.Option("--rep", help="Strategy that plays the rep from turn --at on. Repeatable.")
    ] = ["assertive-consultant"],  # noqa: B006 (typer reads the default, never mutates it)
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="Continuations per strategy (seeds).")] = 3,
    model: Annotated[
        str | None, typer.Option("--model", help="Model for both sides; default: each side's model in the source.")
    ] = None,
    api_base: ApiBaseOpt = None,
    judge_model: Annotated[
        list[str] | None, typer.Option("--judge-model", help="Judge model(s); default: the rep's model. Repeatable.")
    ] = None,
    no_judge: Annotated[bool, typer.Option("--no-judge", help="Do not score the continuations.")] = False,
    max_turns: Annotated[
        int | None, typer.Option("--max-turns", min=2, max=200, help="Turn limit; default: the source's.")
    ] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders go.")] = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this branch's run folder (same arguments).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the local response cache.")] = False,
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Response cache folder.")] = Path(".sandbox-cache"),
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print the pack to PDF with headless Chromium.")] = False,
    cassette: CassetteOpt = None,
    record: RecordOpt = False,
    rubric: RubricOpt = None,
    personas: PersonasOpt = None,
    no_preflight: NoPreflightOpt = False,
) -> None:
    """Continue a saved dialogue from turn --at with another rep strategy: the shared beginning is
    replayed as it was, the continuations are played, judged, and written as a pack."""
    from pydantic import ValidationError

    from sandbox.branching import BranchError, branch_experiment
    from sandbox.catalog import describe_validation_error
    from sandbox.cli.run import run_or_fail

    catalog = open_catalog(personas)
    try:
        for strategy in rep:
            catalog.strategy(strategy)
        settings = model_settings(model, api_base) if model is not None else None
        judges = [] if no_judge else [model_settings(m, api_base) for m in judge_model or []]
        spec = branch_experiment(transcript, at, rep, count, settings, settings, judges, max_turns)
        if not no_judge and not judges:
            spec = spec.model_copy(update={"models": spec.models.model_copy(update={"judge": [spec.models.rep[0]]})})
        catalog.prospect(spec.prospects[0])
        catalog.scenario(spec.scenarios[0])
    except (BranchError, CatalogError) as exc:
        fail(str(exc))
        return
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))
        return
    if record and cassette is None:
        fail("--record needs --cassette PATH")
    prefix = spec.branch_from.prefix  # type: ignore[union-attr]
    console.print(
        f"branch of {escape(transcript)} at turn {at}: {len(prefix.turns)} turns replayed "
        f"(played by {prefix.source_strategy}), then {', '.join(rep)} x {count} seeds"
    )
    loaded_rubric = open_rubric(rubric) if spec.models.judge else None
    outcome = run_or_fail(
        spec,
        catalog,
        loaded_rubric,
        runs_dir=runs_dir,
        resume=resume,
        cache_dir=None if no_cache else cache_dir,
        cassette=cassette,
        record=record,
        report=False,
        preflight=not no_preflight,
    )
    render_continuations(outcome.folder, len(prefix.turns))
    written = write_branch_pack(outcome.folder, loaded_rubric, pdf)
    for path in written:
        console.print(f"pack: {path}", soft_wrap=True)
    console.print(f"run folder: {outcome.folder}", soft_wrap=True)
    if outcome.summary.failed:
        raise typer.Exit(1)


def render_continuations(folder: Path, shared: int) -> None:
    """One line per continuation; its rubric mean counts verified scores only, as the pack's does."""
    from sandbox.packs import supported_scores
    from sandbox.runfolder import RunFolder

    table = Table(title=f"Continuations after {shared} shared turns")
    for column in ("strategy", "seed", "status", "outcome", "turns played", "rubric mean"):
        table.add_column(column, justify="left" if column in ("strategy", "status", "outcome") else "right")
    for result in sorted(RunFolder(folder).latest(), key=lambda r: (r.spec.strategy, r.spec.seed)):
        transcript = result.transcript
        played = len(transcript.turns) - shared if transcript is not None else 0
        outcome = transcript.outcome.status.value if transcript is not None else "-"
        scores = [score for j in result.judgements for score in supported_scores(j).values()]
        mean = sum(scores) / len(scores) if scores else None
        status = result.status if result.error is None else f"{result.status}: {result.error}"
        table.add_row(result.spec.strategy, str(result.spec.seed), escape(status), outcome, str(played), fmt(mean))
    console.print(table)


def write_branch_pack(folder: Path, rubric, pdf: bool) -> list[Path]:  # noqa: ANN001
    """The pack (shared beginning once, continuations side by side) in the run's examples folder."""
    from sandbox.branching import BranchError, branch_pack
    from sandbox.packs import PdfError, write_pack
    from sandbox.runfolder import RunFolder

    try:
        pack = branch_pack(folder, rubric)
    except BranchError as exc:
        fail(str(exc), code=1)
        return []
    try:
        return write_pack(pack, RunFolder(folder).examples_dir / "branch", "branch", pdf=pdf)
    except PdfError as exc:
        fail(str(exc), code=1)
        return []
