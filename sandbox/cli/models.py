"""``sandbox models check``: one tiny constrained request to an endpoint, and what it showed."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from sandbox.cli.common import (
    ApiBaseOpt,
    App,
    Group,
    Structured,
    StructuredOpt,
    console,
    fail,
    model_settings,
    models_ready,
)

models_app = App(cls=Group, no_args_is_help=True, help="Check model endpoints before a run.")


def _mark(ok: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}[ok]


@models_app.command("check")
def check_command(
    model: Annotated[str, typer.Argument(help="'local' (the embedded model) or a litellm id, e.g. openai/my-model.")],
    api_base: ApiBaseOpt = None,
    structured: StructuredOpt = Structured.auto,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    """Send one tiny constrained request: reachable, structured output honoured, tokens/s, cost known."""
    from pydantic import ValidationError

    from sandbox.catalog import describe_validation_error
    from sandbox.checks import check_model

    try:
        settings = model_settings(model, api_base, structured=structured)
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))
    with models_ready([settings], None, False, slots=1) as profiles:
        result = asyncio.run(check_model(profiles[settings], timeout_s=timeout))
    where = f" at {result.api_base}" if result.api_base else ""
    problem = result.problem()
    if not result.reachable and problem:
        fail(problem)
    console.print(f"[bold]{escape(model)}[/]{escape(where)}")
    console.print(f"reachable: {_mark(True)} ({result.latency_s:.2f} s)")
    note = f" (answered: {escape(result.answer)!r})" if result.answer else ""
    console.print(
        f"structured output ({result.structured}) honoured: {_mark(result.structured_ok)}{note}", soft_wrap=True
    )
    speed = f"{result.tokens_per_s:.1f}" if result.tokens_per_s is not None else "-"
    console.print(f"tokens/s: {speed}")
    console.print(f"cost known: {_mark(result.cost_known)}")
    console.print("spec snippet (under models: rep / prospect / judge):")
    console.print(escape(result.snippet()), soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)
