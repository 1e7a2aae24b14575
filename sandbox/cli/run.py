"""``sandbox run``: every episode of an experiment spec, with a live progress bar and a closing summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sandbox.catalog import CatalogError
from sandbox.cli.common import (
    CassetteOpt,
    NoPreflightOpt,
    PersonasOpt,
    RecordOpt,
    RubricOpt,
    app,
    console,
    fail,
    fmt,
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
    no_preflight: NoPreflightOpt = False,
    executor: Annotated[
        str,
        typer.Option("--executor", help="Where episodes play: local (this process) or ray (a Ray cluster's workers)."),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="With --executor ray: the cluster to join (HOST:PORT, or auto: RAY_ADDRESS or the one running "
            "here). Without it (or 'local'), a Ray of the run's own starts on this machine; RAY_ADDRESS is ignored.",
        ),
    ] = None,
) -> None:
    """Run every episode of an experiment spec: concurrent, resumable, cached, within a budget."""
    from sandbox.content import shipped_experiment
    from sandbox.experiment import load_experiment

    catalog = open_catalog(personas)
    try:
        spec_path = shipped_experiment(spec_path)
        spec = load_experiment(spec_path, catalog)
    except CatalogError as exc:
        fail(str(exc))
    if record and cassette is None:
        fail("--record needs --cassette PATH")
    if address is not None and executor != "ray":
        fail("--address needs --executor ray")
    loaded_rubric = open_rubric(rubric) if spec.models.judge else None
    outcome = run_or_fail(
        spec,
        catalog,
        loaded_rubric,
        spec_path=str(spec_path),
        runs_dir=runs_dir,
        resume=resume,
        retry_failed=retry_failed,
        max_cost_usd=max_cost,
        cache_dir=None if no_cache else cache_dir,
        cassette=cassette,
        record=record,
        preflight=not no_preflight,
        executor=executor,
        address=address,
    )
    folder = outcome.folder
    render_summary(outcome.summary)
    # Paths stay whole on one line (rich would break them at 80 columns in a pipe): they are copied.
    console.print(
        f"results: {folder / 'episodes.jsonl'}; table: {outcome.table}; report: {outcome.report_html}", soft_wrap=True
    )
    console.print(f"log: {folder / 'run.log'}", soft_wrap=True)
    console.print(f"next: sandbox view {folder} (the report); sandbox examples {folder} (dialogues)", soft_wrap=True)


def run_or_fail(spec, catalog, rubric, *, progress: bool = True, **options: object):  # noqa: ANN001, ANN201
    """``runner.run`` for a command: the live progress bar (unless ``progress`` is off), and a run that
    cannot start (a locked or mismatched folder, no embedded model, a failed preflight) as one line."""
    from sandbox.local_server import LocalModelError
    from sandbox.preflight import PreflightError
    from sandbox.runner import ExecutorError, SpecMismatchError, run
    from sandbox.store import RunLockedError

    bar = RunProgress() if progress else None
    if bar is not None:
        options |= {"on_plan": bar.planned, "on_start": bar.started, "on_result": bar.finished}
    try:
        return run(spec, catalog, rubric, **options)  # type: ignore[arg-type]
    except (
        RunLockedError,
        SpecMismatchError,
        LocalModelError,
        FileNotFoundError,
        PreflightError,
        ExecutorError,
    ) as exc:
        fail(str(exc))
    finally:
        if bar is not None:
            bar.stop()


class RunProgress:
    """The run's announcement, then a live bar: done / failed / running, retries, tokens, cost, ETA."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.counts = {"ok": 0, "failed": 0, "running": 0, "retries": 0, "tokens": 0, "cost": 0.0}
        self.progress = Progress(
            TextColumn("[bold]episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None

    def status(self) -> str:
        c = self.counts
        return (
            f"ok {c['ok']} failed {c['failed']} running {c['running']} "
            f"retries {c['retries']} tokens {c['tokens']:,} cost ${c['cost']:.4f}"
        )

    def planned(self, start) -> None:  # noqa: ANN001
        plan = start.plan
        console.print(
            f"run [bold]{start.run_id}[/]: {len(plan.planned)} episodes planned, {len(plan.finished)} already "
            f"finished, {len(plan.todo)} to run (concurrency {start.concurrency}) -> {start.folder}"
        )
        if start.embedded:
            console.print("[dim]embedded SmolLM2-135M: for plumbing and demos, not for research conclusions[/]")
        self.progress.start()
        self.task = self.progress.add_task("run", total=len(plan.todo), status="")

    def started(self, _episode) -> None:  # noqa: ANN001
        self.counts["running"] += 1
        self.progress.update(self.task, status=self.status())

    def finished(self, result) -> None:  # noqa: ANN001
        c = self.counts
        c["running"] -= 1
        c["ok" if result.status == "ok" else "failed"] += 1
        c["tokens"] += result.tokens
        c["retries"] += result.retries
        c["cost"] += result.cost_usd
        self.progress.update(self.task, advance=1, status=self.status())

    def stop(self) -> None:
        if self.task is not None:  # never started (the preflight stopped the run): nothing to close
            self.progress.stop()


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
