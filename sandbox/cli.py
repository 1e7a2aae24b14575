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
from sandbox.schemas import EpisodeSpec, ModelSettings, OutcomeStatus, Transcript, Turn

app = typer.Typer(
    help="negotiation-sandbox: a sales rep and a prospect negotiate; compare rep strategies.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

# Any loopback address works on replay: the cassette matcher ignores loopback host and port.
REPLAY_API_BASE = "http://127.0.0.1:8080/v1"


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def default_personas() -> Path:
    local = Path.cwd() / "personas"
    return local if local.is_dir() else DEFAULT_ROOT


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
    cassette: Annotated[Path | None, typer.Option("--cassette", help="Replay model traffic from this file.")] = None,
    record: Annotated[bool, typer.Option("--record", help="With --cassette: record instead of replay.")] = False,
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

    with model_runtime([spec.rep_model, spec.prospect_model], cassette, record, parallel=2) as local_api_base:
        transcript = asyncio.run(
            run_episode(spec, catalog, local_api_base, on_turn=lambda turn: render_turn(turn, names))
        )
    metrics = outcome_metrics(transcript)
    render_outcome(transcript, metrics)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(transcript.model_dump_json(indent=2))
        console.print(f"transcript written to {out}")
    if transcript.outcome.status is OutcomeStatus.FAILED:
        raise typer.Exit(1)
