"""``sandbox negotiate``: one episode, its dialogue shown live, then outcome, metrics and (optionally) judges."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sandbox.amounts import money_text
from sandbox.catalog import CatalogError
from sandbox.cli.common import (
    ApiBaseOpt,
    CassetteOpt,
    NoPreflightOpt,
    PersonasOpt,
    RecordOpt,
    RubricOpt,
    Structured,
    StructuredOpt,
    TurnMode,
    TurnModeOpt,
    app,
    console,
    fail,
    model_settings,
    models_ready,
    open_catalog,
    open_rubric,
    preflight_or_fail,
    render_panel,
)
from sandbox.metrics import OutcomeMetrics
from sandbox.schemas import EpisodeSpec, ModelSettings, OutcomeStatus, Scenario, Transcript, Turn


def render_turn(turn: Turn, names: dict[str, str], scenario: Scenario) -> None:
    colour = "cyan" if turn.speaker == "rep" else "magenta"
    action = ""
    if turn.action.kind.value != "none":
        price = f" {money_text(scenario, turn.action.price)}" if turn.action.price is not None else ""
        action = f"  [bold yellow][{turn.action.kind.value}{price}][/]"
    console.print(f"[bold {colour}]{turn.index:>2} {escape(names[turn.speaker])}[/]: {escape(turn.message)}{action}")
    for note in turn.notes:
        console.print(f"   [dim]note: {escape(note)}[/]")


def render_outcome(transcript: Transcript, metrics: OutcomeMetrics) -> None:
    outcome = transcript.outcome
    style = {"deal": "green", "failed": "red"}.get(outcome.status.value, "yellow")
    price = f" at {money_text(transcript.cast.scenario, outcome.price)}" if outcome.price is not None else ""
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
    api_base: ApiBaseOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    max_turns: Annotated[int, typer.Option("--max-turns", min=2, max=200)] = 12,
    opener: Annotated[str, typer.Option("--opener", help="Who speaks first: rep or prospect.")] = "rep",
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.7,
    turn_mode: TurnModeOpt = TurnMode.auto,
    structured: StructuredOpt = Structured.auto,
    out: Annotated[Path | None, typer.Option("--out", help="Write the transcript JSON here.")] = None,
    handout: Annotated[
        Path | None, typer.Option("--handout", help="Write the dialogue as a Markdown handout for trainers.")
    ] = None,
    cassette: CassetteOpt = None,
    record: RecordOpt = False,
    judge: Annotated[bool, typer.Option("--judge", help="Score the transcript with the judge at the end.")] = False,
    judge_model: Annotated[
        list[str] | None, typer.Option("--judge-model", help="Judge model(s); default: --model. Repeatable.")
    ] = None,
    rubric: RubricOpt = None,
    personas: PersonasOpt = None,
    no_preflight: NoPreflightOpt = False,
) -> None:
    """Run one negotiation, showing the dialogue live, then the outcome and metrics."""
    from pydantic import ValidationError

    from sandbox.catalog import describe_validation_error
    from sandbox.episode import play_episode
    from sandbox.judge import aggregate, case_from_transcript
    from sandbox.profiles import needs_embedded_server
    from sandbox.schemas import JudgePanel

    catalog = open_catalog(personas)
    try:
        for kind, item_id in (("strategy", rep), ("prospect", prospect), ("scenario", scenario)):
            getattr(catalog, kind)(item_id)
    except CatalogError as exc:
        fail(str(exc))
    try:

        def settings(name: str) -> ModelSettings:
            return model_settings(name, api_base, temperature=temperature, turn_mode=turn_mode, structured=structured)

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
        judges = [model_settings(m, api_base, structured=structured) for m in (judge_model or [model])] if judge else []
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))

    runtime_models = [spec.rep_model, spec.prospect_model, *judges]
    if record and cassette is None:
        fail("--record needs --cassette PATH")
    if not no_preflight:
        preflight_or_fail(runtime_models, cassette, record)
    sc = catalog.scenario(scenario)
    names = {"rep": sc.rep_name, "prospect": catalog.prospect(prospect).display_name}
    console.print(
        f"[bold]{escape(catalog.strategy(rep).name)}[/] rep vs [bold]{escape(catalog.prospect(prospect).name)}[/]"
        f" on [bold]{escape(sc.title)}[/] (list {sc.money(sc.list_price)}), seed {seed}, "
        f"models rep={spec.rep_model.model} prospect={spec.prospect_model.model}\n"
    )
    if needs_embedded_server(runtime_models):
        console.print("[dim]embedded SmolLM2-135M: for plumbing and demos, not for research conclusions[/]\n")
    loaded_rubric = open_rubric(rubric) if judge else None
    with models_ready(runtime_models, cassette, record, slots=4 if judge else 2) as profiles:
        result = asyncio.run(
            play_episode(
                "negotiate",
                spec,
                catalog,
                profiles,
                loaded_rubric,
                judges,
                on_turn=lambda turn: render_turn(turn, names, sc),
            )
        )
    transcript = result.transcript
    if transcript is None or result.metrics is None:  # nothing was said: the setup failed
        fail(result.error or "the negotiation failed before its first turn", code=1)
        return
    metrics = result.metrics
    render_outcome(transcript, metrics)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(transcript.model_dump_json(indent=2))
        console.print(f"transcript written to {out}")
    if result.judgements and loaded_rubric is not None:
        panel = JudgePanel(
            episode_id=result.episode_id, judgements=result.judgements, aggregate=aggregate(result.judgements)
        )
        render_panel(panel, case_from_transcript(transcript), loaded_rubric)
        if out is not None:
            judged = out.with_suffix(".judgement.json")
            judged.write_text(panel.model_dump_json(indent=2))
            console.print(f"judgement written to {judged}")
    if handout is not None:
        from sandbox.examples import render_dialogue

        why = f"Generated with `sandbox negotiate`, seed {seed}."
        handout.parent.mkdir(parents=True, exist_ok=True)
        handout.write_text(render_dialogue(transcript, result.judgements, metrics, why))
        console.print(f"handout written to {handout}")
    if transcript.outcome.status is OutcomeStatus.FAILED:
        raise typer.Exit(1)
