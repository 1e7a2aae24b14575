"""``sandbox run``: every episode of an experiment spec, with a live progress bar and a closing summary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sandbox.catalog import CatalogError
from sandbox.cli.common import (
    CassetteOpt,
    PersonasOpt,
    RecordOpt,
    RubricOpt,
    app,
    console,
    fail,
    fmt,
    model_runtime,
    open_catalog,
    open_rubric,
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
    cassette: CassetteOpt = None,
    record: RecordOpt = False,
    rubric: RubricOpt = None,
    personas: PersonasOpt = None,
) -> None:
    """Run every episode of an experiment spec: concurrent, resumable, cached, within a budget."""
    from sandbox.content import shipped_experiment
    from sandbox.experiment import load_experiment
    from sandbox.runner import RunOptions, SpecMismatchError, check_resumable, manifest_for, plan_run
    from sandbox.store import RunLockedError, RunStore, new_run_id
    from sandbox.table import export

    catalog = open_catalog(personas)
    try:
        spec_path = shipped_experiment(spec_path)
        spec = load_experiment(spec_path, catalog)
    except CatalogError as exc:
        fail(str(exc))
    loaded_rubric = open_rubric(rubric) if spec.models.judge else None
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
        table.add_row(strategy, str(line.episodes), str(line.failed), fmt(line.deal_rate), fmt(line.mean_score))
    console.print(table)
