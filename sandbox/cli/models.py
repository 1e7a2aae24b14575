"""``sandbox models check``: one tiny constrained request to an endpoint, and what it showed."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from sandbox.cli.common import (
    App,
    Group,
    Structured,
    StructuredOpt,
    console,
    err,
    fail,
    model_settings,
    models_ready,
)

if TYPE_CHECKING:
    from sandbox.checks import CheckResult

models_app = App(cls=Group, no_args_is_help=True, help="Check model endpoints before a run.")


def _mark(ok: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}[ok]


ApiBasesOpt = Annotated[
    list[str] | None,
    typer.Option("--api-base", help="OpenAI-compatible server URL; repeat it for each deployment of the model."),
]


@models_app.command("check")
def check_command(
    model: Annotated[str, typer.Argument(help="'local' (the embedded model) or a litellm id, e.g. openai/my-model.")],
    api_base: ApiBasesOpt = None,
    structured: StructuredOpt = Structured.auto,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    """Send one tiny constrained request: reachable, structured output honoured, tokens/s, cost known.
    With several --api-base, the model's deployments: one request to each."""
    from pydantic import ValidationError

    from sandbox.catalog import describe_validation_error
    from sandbox.checks import check_model
    from sandbox.profiles import each_server
    from sandbox.schemas import ModelSettings

    bases = api_base or []
    try:
        settings = model_settings(model, bases[0] if len(bases) == 1 else None, structured=structured)
        if len(bases) > 1:
            deployments = [{"api_base": base} for base in bases]
            settings = ModelSettings.model_validate(settings.model_dump() | {"deployments": deployments})
    except ValidationError as exc:
        fail(describe_validation_error("command line", exc))
    with models_ready([settings], None, False, slots=1) as profiles:
        servers = each_server(profiles[settings])

        async def check_all() -> list[CheckResult]:
            return list(await asyncio.gather(*(check_model(p, timeout_s=timeout) for p in servers)))

        results = asyncio.run(check_all())
    worst = max(_show(model, result) for result in results)  # each deployment told, whichever failed
    if worst:
        raise typer.Exit(worst)


def _show(model: str, result: CheckResult) -> int:
    """What one check showed; the exit status it asks for (2: unreachable, 1: structured output not honoured)."""
    where = f" at {result.api_base}" if result.api_base else ""
    problem = result.problem()
    if not result.reachable and problem:
        err.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
        return 2
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
    return 0 if result.ok else 1
