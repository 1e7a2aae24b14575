"""Command line: thin wrappers that parse options, call the pipeline, and render with rich."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sandbox.catalog import DEFAULT_ROOT, Catalog, CatalogError, load_catalog
from sandbox.metrics import OutcomeMetrics, outcome_metrics
from sandbox.schemas import EpisodeSpec, ModelSettings, OutcomeStatus, Rubric, Transcript, Turn

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

# Any loopback address works on replay: the cassette matcher ignores loopback host and port.
REPLAY_API_BASE = "http://127.0.0.1:8080/v1"


def _show_version(value: bool) -> None:
    if value:
        from sandbox import __version__

        console.print(f"negotiation-sandbox {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """negotiation-sandbox: a sales rep and a prospect negotiate; compare rep strategies."""


def fail(message: str, code: int = 2) -> None:
    """One line, whatever the terminal's width: scripts and CI logs grep for it."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def project_path(relative: str, fallback: Path) -> Path:
    """Content in the working directory wins (a user's own project); else the package's copy."""
    local = Path.cwd() / relative
    return local if local.exists() else fallback


def default_personas() -> Path:
    return project_path("personas", DEFAULT_ROOT)


PersonasOpt = Annotated[Path | None, typer.Option("--personas", help="Folder of strategies/, prospects/, scenarios/.")]


def _catalog(personas: Path | None) -> Catalog:
    try:
        return load_catalog(personas or default_personas())
    except CatalogError as exc:
        fail(str(exc))
        raise  # unreachable; for type checkers


@app.command("list")
def list_content(personas: PersonasOpt = None) -> None:
    """Show rep strategies, prospects and scenarios, with the sources they come from."""
    catalog = _catalog(personas)

    def sources(items) -> str:  # noqa: ANN001
        return "\n".join(f"{s.title} ({s.author})" for s in items)

    table = Table(title="Rep strategies", show_lines=True)
    for col in ("id", "name", "source"):
        table.add_column(col)
    for s in catalog.strategies.values():
        table.add_row(s.id, s.name + (" [dim](anti-pattern)[/]" if s.anti_pattern else ""), sources(s.sources))
    console.print(table)

    table = Table(title="Prospects", show_lines=True)
    for col in ("id", "name", "source"):
        table.add_column(col)
    for p in catalog.prospects.values():
        table.add_row(p.id, p.name, sources(p.sources))
    console.print(table)

    table = Table(title="Scenarios", show_lines=True)
    for col in ("id", "title", "list price", "source"):
        table.add_column(col)
    for sc in catalog.scenarios.values():
        table.add_row(sc.id, sc.title, f"{sc.money(sc.list_price)} {sc.price_unit}", sources(sc.sources))
    console.print(table)


def render_turn(turn: Turn, names: dict[str, str]) -> None:
    colour = "cyan" if turn.speaker == "rep" else "magenta"
    action = ""
    if turn.action.kind.value != "none":
        price = f" {turn.action.price:,.0f}" if turn.action.price is not None else ""
        action = f"  [bold yellow][{turn.action.kind.value}{price}][/]"
    console.print(f"[bold {colour}]{turn.index:>2} {escape(names[turn.speaker])}[/]: {escape(turn.message)}{action}")
    for note in turn.notes:
        console.print(f"   [dim]note: {escape(note)}[/]")


def render_outcome(transcript: Transcript, metrics: OutcomeMetrics) -> None:
    outcome = transcript.outcome
    style = {"deal": "green", "failed": "red"}.get(outcome.status.value, "yellow")
    price = f" at {transcript.cast.scenario.money(outcome.price)}" if outcome.price is not None else ""
    reason = f" ({escape(outcome.reason)})" if outcome.reason else ""
    console.print(f"\n[bold {style}]outcome: {outcome.status.value}{price}[/]{reason}")
    table = Table(title="Metrics", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.model_dump(mode="json").items():
        if isinstance(value, float):
            value = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
        table.add_row(name, "-" if value is None else str(value))
    console.print(table)


@contextlib.contextmanager
def model_runtime(
    specs: list[ModelSettings], cassette: Path | None, record: bool, parallel: int
) -> Iterator[str | None]:
    """Yield the embedded server's API base (started only when needed), inside a cassette if asked."""
    from sandbox.cassettes import use_cassette
    from sandbox.local_server import LocalModelError, serve_local_model

    needs_local = any(s.is_local for s in specs)
    start_server = needs_local and (cassette is None or record)
    with contextlib.ExitStack() as stack:
        api_base = REPLAY_API_BASE if needs_local else None
        if start_server:  # before the cassette, so the health checks are not recorded
            try:
                api_base = stack.enter_context(serve_local_model(parallel=parallel)).api_base
            except LocalModelError as exc:
                fail(str(exc))
        if cassette is not None:
            try:
                stack.enter_context(use_cassette(cassette, "once" if record else "none"))
            except FileNotFoundError as exc:
                fail(str(exc))
        yield api_base


@app.command()
def negotiate(
    rep: Annotated[str, typer.Option("--rep", help="Rep strategy id (see `sandbox list`).")] = "assertive-consultant",
    prospect: Annotated[str, typer.Option("--prospect", help="Prospect id.")] = "price-haggler",
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario id.")] = "saas-seats",
    model: Annotated[str, typer.Option("--model", help="Model for both sides: 'local' or a litellm id.")] = "local",
    rep_model: Annotated[str | None, typer.Option("--rep-model", help="Override the rep's model.")] = None,
    prospect_model: Annotated[
        str | None, typer.Option("--prospect-model", help="Override the prospect's model.")
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    max_turns: Annotated[int, typer.Option("--max-turns", min=2, max=200)] = 12,
    opener: Annotated[str, typer.Option("--opener", help="Who speaks first: rep or prospect.")] = "rep",
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.7,
    turn_mode: Annotated[str, typer.Option("--turn-mode", help="auto, two-call or one-call.")] = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="Write the transcript JSON here.")] = None,
    handout: Annotated[
        Path | None, typer.Option("--handout", help="Write the dialogue as a Markdown handout for trainers.")
    ] = None,
    cassette: Annotated[Path | None, typer.Option("--cassette", help="Replay model traffic from this file.")] = None,
    record: Annotated[bool, typer.Option("--record", help="With --cassette: record instead of replay.")] = False,
    judge: Annotated[bool, typer.Option("--judge", help="Score the transcript with the judge at the end.")] = False,
    judge_model: Annotated[
        list[str] | None, typer.Option("--judge-model", help="Judge model(s); default: --model. Repeatable.")
    ] = None,
    rubric: Annotated[Path | None, typer.Option("--rubric", help="Rubric YAML for --judge.")] = None,
    personas: PersonasOpt = None,
) -> None:
    """Run one negotiation, showing the dialogue live, then the outcome and metrics."""
    from pydantic import ValidationError

    from sandbox.catalog import describe_validation_error
    from sandbox.engine import run_episode

    catalog = _catalog(personas)
    try:
        for kind, item_id in (("strategy", rep), ("prospect", prospect), ("scenario", scenario)):
            getattr(catalog, kind)(item_id)
    except CatalogError as exc:
        fail(str(exc))
    try:

        def settings(name: str) -> ModelSettings:
            return ModelSettings(
                model=name,
                api_base=None if name == "local" else api_base,
                temperature=temperature,
                turn_mode=turn_mode,  # type: ignore[arg-type]
            )

        spec = EpisodeSpec(
            strategy=rep,
            prospect=prospect,
            scenario=scenario,
            seed=seed,
            max_turns=max_turns,
            opener=opener,  # type: ignore[arg-type]
            rep_model=settings(rep_model or model),
            prospect_model=settings(prospect_model or model),
        )
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))
    if record and cassette is None:
        fail("--record needs --cassette PATH")

    sc = catalog.scenario(scenario)
    names = {"rep": sc.rep_name, "prospect": catalog.prospect(prospect).display_name}
    console.print(
        f"[bold]{escape(catalog.strategy(rep).name)}[/] rep vs [bold]{escape(catalog.prospect(prospect).name)}[/]"
        f" on [bold]{escape(sc.title)}[/] (list {sc.money(sc.list_price)}), seed {seed}, "
        f"models rep={spec.rep_model.model} prospect={spec.prospect_model.model}\n"
    )
    if spec.rep_model.is_local or spec.prospect_model.is_local:
        console.print("[dim]embedded SmolLM2-135M: for plumbing and demos, not for research conclusions[/]\n")

    judges = [_settings(m, api_base) for m in (judge_model or [model])] if judge else []
    loaded_rubric = _rubric(rubric) if judge else None
    runtime_models = [spec.rep_model, spec.prospect_model, *judges]
    with model_runtime(runtime_models, cassette, record, parallel=4 if judge else 2) as local_api_base:
        transcript = asyncio.run(
            run_episode(spec, catalog, local_api_base, on_turn=lambda turn: render_turn(turn, names))
        )
        metrics = outcome_metrics(transcript)
        render_outcome(transcript, metrics)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(transcript.model_dump_json(indent=2))
            console.print(f"transcript written to {out}")
        judgements = []
        if judges and loaded_rubric is not None and transcript.turns:
            from sandbox.judge import case_from_transcript, judge_panel

            case = case_from_transcript(transcript)
            panel = asyncio.run(judge_panel(case, loaded_rubric, judges, local_api_base))
            judgements = panel.judgements
            render_panel(panel, case, loaded_rubric)
            if out is not None:
                judged = out.with_suffix(".judgement.json")
                judged.write_text(panel.model_dump_json(indent=2))
                console.print(f"judgement written to {judged}")
        if handout is not None:
            from sandbox.examples import render_dialogue

            why = f"Generated with `sandbox negotiate`, seed {seed}."
            handout.parent.mkdir(parents=True, exist_ok=True)
            handout.write_text(render_dialogue(transcript, judgements, metrics, why))
            console.print(f"handout written to {handout}")
    if transcript.outcome.status is OutcomeStatus.FAILED:
        raise typer.Exit(1)


def _settings(model: str, api_base: str | None) -> ModelSettings:
    return ModelSettings(model=model, api_base=None if model == "local" else api_base)


def _rubric(path: Path | None) -> Rubric:
    from sandbox.judge import DEFAULT_RUBRIC, load_rubric

    try:
        return load_rubric(path or project_path("judges/rubric.yaml", DEFAULT_RUBRIC))
    except CatalogError as exc:
        fail(str(exc))
        raise  # unreachable


def render_panel(panel, case, rubric) -> None:  # noqa: ANN001
    """Scores with their evidence: a verified quote is marked ✓, one not found in its turn ✗."""
    for judgement in panel.judgements:
        title = f"Judge {judgement.judge_model} ({judgement.rubric_id})"
        table = Table(title=title, show_lines=True)
        for col in ("criterion", "score", "evidence", "rationale"):
            table.add_column(col)
        for score in judgement.scores:
            name = rubric.criterion(score.criterion).name
            if score.score is None:
                table.add_row(name, "[red]failed[/]", "", escape(score.error or ""))
                continue
            quotes = "\n".join(
                f'{"[green]✓[/]" if e.verified else "[red]✗[/]"} t{e.turn}: "{escape(e.quote)}"' for e in score.evidence
            )
            mark = "" if score.supported else " [yellow](unsupported)[/]"
            table.add_row(name, f"{score.score}{mark}", quotes or "[dim]none[/]", escape(score.rationale))
        console.print(table)
        console.print(
            f"scored {len(judgement.scored)}/{len(judgement.scores)}, unsupported {judgement.unsupported}, "
            f"failed {len(judgement.failures)}, judge calls {len(judgement.calls)}"
        )
        if judgement.self_preference:
            roles = " and ".join(judgement.self_preference)
            console.print(f"[bold yellow]warning:[/] the judge model also played the {roles}: self-preference risk")
    if len(panel.judgements) > 1:
        table = Table(title="Aggregate over judges")
        for col in ("criterion", "mean", "spread", "n"):
            table.add_column(col)
        for criterion, agg in panel.aggregate.items():
            table.add_row(criterion, f"{agg.mean:.2f}", f"{agg.spread:.2f}", str(agg.n))
        console.print(table)


@app.command("judge")
def judge_command(
    target: Annotated[str, typer.Argument(help="A transcript JSON file, or 'calibrate' to score the calibration set.")],
    model: Annotated[list[str] | None, typer.Option("--model", help="Judge model(s); repeatable.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    rubric: Annotated[Path | None, typer.Option("--rubric", help="Rubric YAML.")] = None,
    calibration: Annotated[Path | None, typer.Option("--calibration", help="Calibration set folder.")] = None,
    verbosity_cases: Annotated[int, typer.Option("--verbosity-cases", help="Cases re-judged with padding.")] = 6,
    out: Annotated[Path | None, typer.Option("--out", help="Write the judgement / calibration JSON here.")] = None,
    cassette: Annotated[Path | None, typer.Option("--cassette", help="Replay model traffic from this file.")] = None,
    record: Annotated[bool, typer.Option("--record", help="With --cassette: record instead of replay.")] = False,
    personas: PersonasOpt = None,
) -> None:
    """Score a transcript against the rubric, or calibrate judge models (`sandbox judge calibrate`)."""
    from pydantic import ValidationError

    from sandbox.schemas import Transcript

    judges = [_settings(m, api_base) for m in (model or ["local"])]
    loaded_rubric = _rubric(rubric)
    if target == "calibrate":
        _calibrate(judges, loaded_rubric, calibration, verbosity_cases, out, cassette, record, personas)
        return
    path = Path(target)
    try:
        transcript = Transcript.model_validate_json(path.read_bytes())
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror or exc}")
    except ValidationError as exc:
        from sandbox.catalog import describe_validation_error

        fail(describe_validation_error(path, exc))
    from sandbox.judge import case_from_transcript, judge_panel

    case = case_from_transcript(transcript)
    with model_runtime(judges, cassette, record, parallel=4) as local_api_base:
        panel = asyncio.run(judge_panel(case, loaded_rubric, judges, local_api_base))
    render_panel(panel, case, loaded_rubric)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(panel.model_dump_json(indent=2))
        console.print(f"judgement written to {out}")


def _calibrate(judges, rubric, folder, verbosity_cases, out, cassette, record, personas) -> None:  # noqa: ANN001
    import json

    from sandbox.calibration import DEFAULT_SET, calibrate, load_calibration

    catalog = _catalog(personas)
    try:
        cases = load_calibration(folder or project_path("judges/calibration", DEFAULT_SET), rubric, catalog)
    except CatalogError as exc:
        fail(str(exc))
    reports = []
    with model_runtime(judges, cassette, record, parallel=4) as local_api_base:
        for settings in judges:
            console.print(f"calibrating {settings.model} on {len(cases)} cases ...")
            report, _ = asyncio.run(
                calibrate(cases, rubric, catalog, settings, local_api_base, verbosity_cases=verbosity_cases)
            )
            render_calibration(report)
            reports.append(report)
    target = out or Path("runs") / "calibration.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([r.model_dump(mode="json") for r in reports], indent=2) + "\n")
    console.print(f"calibration written to {target}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_calibration(report) -> None:  # noqa: ANN001
    table = Table(title=f"Calibration of {report.judge_model} ({report.cases} cases, rubric {report.rubric_id})")
    for col in ("criterion", "n", "Spearman", "QW kappa", "MAE"):
        table.add_column(col, justify="right" if col != "criterion" else "left")
    for criterion, a in report.per_criterion.items():
        table.add_row(criterion, str(a.n), _fmt(a.spearman), _fmt(a.qwk), _fmt(a.mae))
    o = report.overall
    table.add_row("[bold]overall[/]", str(o.n), _fmt(o.spearman), _fmt(o.qwk), _fmt(o.mae))
    console.print(table)
    console.print(
        f"scored {report.scored}, failed {report.failed}, unsupported evidence share {_fmt(report.unsupported_share)}"
    )
    console.print(
        f"attack success rate: {_fmt(report.attack_success_rate)} over {report.manipulation_cases} manipulation cases"
    )
    shift = report.verbosity_shift
    verdict = "-" if shift is None else ("within" if abs(shift) <= report.verbosity_tolerance else "OUTSIDE")
    console.print(
        f"verbosity shift (padded minus plain, mean score): {_fmt(shift)} over {report.verbosity_cases} cases; "
        f"{verdict} tolerance ±{report.verbosity_tolerance}"
    )


@app.command("run")
def run_command(
    spec_path: Annotated[Path, typer.Argument(help="Experiment spec YAML, or a shipped one by name (quickstart).")],
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed episodes again.")] = False,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Stop starting episodes at this USD.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the local response cache.")] = False,
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Response cache folder.")] = Path(".sandbox-cache"),
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders go.")] = Path("runs"),
    cassette: Annotated[Path | None, typer.Option("--cassette", help="Replay model traffic from this file.")] = None,
    record: Annotated[bool, typer.Option("--record", help="With --cassette: record instead of replay.")] = False,
    rubric: Annotated[Path | None, typer.Option("--rubric", help="Rubric YAML for the judges.")] = None,
    personas: PersonasOpt = None,
) -> None:
    """Run every episode of an experiment spec: concurrent, resumable, cached, within a budget."""
    from sandbox.content import shipped_experiment
    from sandbox.experiment import load_experiment
    from sandbox.runner import RunOptions, SpecMismatchError, check_resumable, manifest_for, plan_run
    from sandbox.store import RunLockedError, RunStore, new_run_id
    from sandbox.table import export

    catalog = _catalog(personas)
    try:
        spec_path = shipped_experiment(spec_path)
        spec = load_experiment(spec_path, catalog)
    except CatalogError as exc:
        fail(str(exc))
    loaded_rubric = _rubric(rubric) if spec.models.judge else None
    folder = resume or runs_dir / new_run_id(spec.id)
    cache = None
    if not no_cache and cassette is None:
        from sandbox.cache import ResponseCache

        cache = ResponseCache(cache_dir)
    try:
        with RunStore(folder) as store:
            run_id = check_resumable(store, spec) if resume is not None else folder.name
            plan = plan_run(spec, folder, retry_failed)
            if resume is None:
                store.write_manifest(manifest_for(spec, run_id, str(spec_path), len(plan.planned)))
            console.print(
                f"run [bold]{run_id}[/]: {len(plan.planned)} episodes planned, {len(plan.finished)} already finished, "
                f"{len(plan.todo)} to run (concurrency {spec.concurrency}) -> {folder}"
            )
            if any(m.is_local for m in spec.all_models()):
                console.print("[dim]embedded SmolLM2-135M: for plumbing and demos, not for research conclusions[/]")
            parallel = max(2, min(spec.concurrency, 8))
            needed = spec.all_models() if plan.todo else []  # nothing left to run: load no model
            with model_runtime(needed, cassette, record, parallel=parallel) as local_api_base:
                options = RunOptions(
                    retry_failed=retry_failed, max_cost_usd=max_cost, cache=cache, local_slots=parallel
                )
                summary = _run_with_progress(spec, catalog, loaded_rubric, store, run_id, plan, local_api_base, options)
            table = export(folder)
            from sandbox.report import write_report

            _, report_html = write_report(folder)
    except (RunLockedError, SpecMismatchError) as exc:
        fail(str(exc))
    finally:
        if cache is not None:
            cache.close()
    render_summary(summary)
    # Paths stay whole on one line (rich would break them at 80 columns in a pipe): they are copied.
    console.print(f"results: {folder / 'episodes.jsonl'}; table: {table}; report: {report_html}", soft_wrap=True)
    console.print(f"log: {folder / 'run.log'}", soft_wrap=True)
    console.print(f"next: sandbox view {folder} (the report); sandbox examples {folder} (dialogues)", soft_wrap=True)


def _run_with_progress(spec, catalog, rubric, store, run_id, plan, api_base, options):  # noqa: ANN001, ANN202
    """Run with a live progress bar: done / failed / running, retries, tokens and cost so far, ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from sandbox.runner import run_experiment

    counts = {"ok": 0, "failed": 0, "running": 0, "retries": 0, "tokens": 0, "cost": 0.0}
    with Progress(
        TextColumn("[bold]episodes"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("run", total=len(plan.todo), status="")

        def status() -> str:
            return (
                f"ok {counts['ok']} failed {counts['failed']} running {counts['running']} "
                f"retries {counts['retries']} tokens {counts['tokens']:,} cost ${counts['cost']:.4f}"
            )

        def on_start(_episode) -> None:  # noqa: ANN001
            counts["running"] += 1
            progress.update(task, status=status())

        def on_result(result) -> None:  # noqa: ANN001
            counts["running"] -= 1
            counts["ok" if result.status == "ok" else "failed"] += 1
            counts["tokens"] += result.tokens
            counts["retries"] += result.retries
            counts["cost"] += result.cost_usd
            progress.update(task, advance=1, status=status())

        options.on_start, options.on_result = on_start, on_result
        return asyncio.run(run_experiment(spec, catalog, rubric, store, run_id, plan, api_base, options))


def render_summary(summary) -> None:  # noqa: ANN001
    console.print(
        f"\n[bold]{summary.run_id}[/]: {summary.ok + summary.failed}/{summary.planned} episodes finished "
        f"({summary.ran} this run, {summary.finished_before} before), ok {summary.ok}, failed {summary.failed}; "
        f"wall {summary.wall_time_s:.1f} s; model calls {summary.calls_made} ({summary.retries} retries), "
        f"cache hits {summary.cache_hits}; "
        f"cost ${summary.cost_usd:.4f} (this run ${summary.run_cost_usd:.4f})"
    )
    if summary.failures_by_reason:
        console.print("failures: " + ", ".join(f"{k} x{v}" for k, v in summary.failures_by_reason.items()))
    if summary.stopped_for_budget:
        console.print(
            f"[bold yellow]budget reached[/]: spent ${summary.cost_usd:.4f} of ${summary.budget_usd:.4f}; "
            f"{summary.not_started} episodes not started. Resume later with --resume {summary.folder}"
        )
    table = Table(title="Per strategy")
    for col in ("strategy", "episodes", "failed", "deal rate", "mean rubric score"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for strategy, line in summary.per_strategy.items():
        table.add_row(strategy, str(line.episodes), str(line.failed), _fmt(line.deal_rate), _fmt(line.mean_score))
    console.print(table)


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="A run folder under runs/.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
) -> None:
    """Write the tidy results table (one row per episode x judge model)."""
    from sandbox.table import export

    if fmt not in {"parquet", "csv"}:
        fail(f"--format must be parquet or csv, not '{fmt}'")
    if not (run / "episodes.jsonl").exists():
        fail(f"{run}: no episodes.jsonl; not a run folder")
    target = export(run, fmt, out)  # type: ignore[arg-type]
    console.print(f"written {target}")


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="A run folder under runs/.")],
    screenshot: Annotated[
        bool, typer.Option("--screenshot", help="Also save report.png, taken in headless Chromium.")
    ] = False,
) -> None:
    """Write report.md and a self-contained report.html for a run."""
    from sandbox.report import screenshot as take_screenshot
    from sandbox.report import write_report

    if not (run / "manifest.json").exists():
        fail(f"{run}: no manifest.json; not a run folder")
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
    run: Annotated[Path, typer.Argument(help="A run folder under runs/.")],
    by: Annotated[
        str, typer.Option("--by", help="Column to rank by: score_mean, score_<criterion> or m_<metric>.")
    ] = "score_mean",
    per_strategy: Annotated[int, typer.Option("--per-strategy", min=1, help="Highest and lowest N each.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write (default: RUN/examples).")] = None,
) -> None:
    """Write example dialogues for trainers: each strategy's best and worst episodes, as Markdown."""
    from sandbox.examples import ExamplesError, write_examples

    if not (run / "manifest.json").exists():
        fail(f"{run}: no manifest.json; not a run folder")
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
    run: Annotated[Path, typer.Argument(help="A run folder under runs/.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free port).")] = 0,
) -> None:
    """Serve a run's report on 127.0.0.1 and print the address (Ctrl-C to stop)."""
    import functools
    import http.server

    from sandbox.report import write_report

    if not (run / "manifest.json").exists():
        fail(f"{run}: no manifest.json; not a run folder")
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
