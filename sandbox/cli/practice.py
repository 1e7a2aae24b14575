"""``sandbox practice``: a person plays one side against an agent, in the terminal or a browser page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

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
)


@app.command("practice")
def practice_command(
    prospect: Annotated[str, typer.Option("--prospect", help="Prospect id (see `sandbox list`).")] = "price-haggler",
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario id.")] = "saas-seats",
    side: Annotated[str, typer.Option("--as", help="The side you play: rep or prospect.")] = "rep",
    difficulty: Annotated[
        str, typer.Option("--difficulty", help="easy, normal or hard (the prospect's brief, from its persona file).")
    ] = "normal",
    model: Annotated[str, typer.Option("--model", help="The agent's model: 'local' or a litellm id.")] = "local",
    api_base: ApiBaseOpt = None,
    hint_strategy: Annotated[
        str, typer.Option("--hint-strategy", help="The strategy /hint and the scorecard suggest from.")
    ] = "assertive-consultant",
    rep: Annotated[
        str, typer.Option("--rep", help="The agent rep's strategy when you play the prospect.")
    ] = "assertive-consultant",
    pass_mark: Annotated[float, typer.Option("--pass-mark", min=1.0, max=5.0, help="Rubric mean to pass.")] = 3.5,
    max_turns: Annotated[int, typer.Option("--max-turns", min=2, max=200)] = 12,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    opener: Annotated[str, typer.Option("--opener", help="Who speaks first: rep or prospect.")] = "rep",
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.7,
    turn_mode: TurnModeOpt = TurnMode.auto,
    structured: StructuredOpt = Structured.auto,
    judge_model: Annotated[
        list[str] | None, typer.Option("--judge-model", help="Judge model(s); default: --model. Repeatable.")
    ] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Sessions are saved under RUNS_DIR/practice/.")] = Path(
        "runs"
    ),
    web: Annotated[bool, typer.Option("--web", help="Serve the session as a page on 127.0.0.1 instead.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="With --web: the port (0: any free one).")] = 0,
    cassette: CassetteOpt = None,
    record: RecordOpt = False,
    rubric: RubricOpt = None,
    personas: PersonasOpt = None,
    no_preflight: NoPreflightOpt = False,
) -> None:
    """Practise a negotiation: you play one side, an agent the other; the judge scores your side at the end."""
    from pydantic import ValidationError

    from sandbox.catalog import describe_validation_error
    from sandbox.practice.session import PracticeSetup, hint_cast, practice_cast

    catalog = open_catalog(personas)
    try:

        def settings(name: str) -> object:
            return model_settings(name, api_base, temperature=temperature, turn_mode=turn_mode, structured=structured)

        agent = settings(model)
        judges = [model_settings(m, api_base, structured=structured) for m in (judge_model or [model])]
        setup = PracticeSetup(
            prospect=prospect,
            scenario=scenario,
            side=side,  # type: ignore[arg-type]
            difficulty=difficulty,  # type: ignore[arg-type]
            hint_strategy=hint_strategy,
            rep_strategy=rep,
            pass_mark=pass_mark,
            max_turns=max_turns,
            seed=seed,
            opener=opener,  # type: ignore[arg-type]
            agent_model=agent,  # type: ignore[arg-type]
            judges=judges,
        )
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))
        return
    try:
        cast = practice_cast(setup, catalog)
        hint_cast(setup, cast, catalog)
    except CatalogError as exc:  # an unknown id, or a level the persona file does not state
        fail(str(exc))
        return
    models = [setup.agent_model, *setup.judges]
    if record and cassette is None:
        fail("--record needs --cassette PATH")
    if not no_preflight:
        preflight_or_fail(models, cassette, record)
    loaded_rubric = open_rubric(rubric)
    with models_ready(models, cassette, record, slots=2) as profiles:
        if web:
            from sandbox.practice.web import serve

            asyncio.run(serve(setup, catalog, loaded_rubric, profiles, runs_dir, port, console))
            return
        from sandbox.practice.session import PracticeSession
        from sandbox.practice.terminal import TerminalIO

        names = {"rep": cast.scenario.rep_name, "prospect": cast.prospect.display_name}
        io = TerminalIO(console, cast.scenario, names, setup.side)
        session = PracticeSession(setup, catalog, loaded_rubric, profiles, io, runs_dir=runs_dir)
        try:
            asyncio.run(session.run())
        except KeyboardInterrupt:
            console.print("\n[dim]interrupted: nothing saved[/]")
            raise typer.Exit(130) from None
