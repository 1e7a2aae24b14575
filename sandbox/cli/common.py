"""What every command shares: the one typer app, the consoles, ``fail()``, content loaders, the options
several commands take (declared once here, so their flags and help cannot drift apart), the model
runtime, and renderers used by more than one command.

Heavy modules (litellm, the engine, the judge) are imported inside functions, so ``sandbox --help``
and ``sandbox list`` stay fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from sandbox.catalog import DEFAULT_ROOT, Catalog, CatalogError, load_catalog
from sandbox.schemas import ModelSettings, Rubric

if TYPE_CHECKING:
    from sandbox.profiles import Profiles


def _untyped_flags(params: list) -> list:
    """A flag takes no value, so its help row names no type.

    typer's rich help panel prints every option's type, a flag's too (``--record <bool>``), though its
    plain formatter leaves flags out; an empty metavar is what that panel prints instead of the type.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every ``sandbox`` command (the app below makes it the default), so its flags show no ``<bool>``."""

    def get_params(self, ctx: typer.Context) -> list:
        return _untyped_flags(super().get_params(ctx))


class Group(TyperGroup):
    """The top level (``--version``, ``--help``), with flags shown like :class:`Command`'s."""

    def get_params(self, ctx: typer.Context) -> list:
        return _untyped_flags(super().get_params(ctx))


class App(typer.Typer):
    """A Typer whose commands are :class:`Command` unless one asks for another class."""

    def command(self, *args, cls: type[TyperCommand] | None = None, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


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


# Options that several commands take.
PersonasOpt = Annotated[Path | None, typer.Option("--personas", help="Folder of strategies/, prospects/, scenarios/.")]
CassetteOpt = Annotated[Path | None, typer.Option("--cassette", help="Replay model traffic from this file.")]
RecordOpt = Annotated[bool, typer.Option("--record", help="With --cassette: record instead of replay.")]
ApiBaseOpt = Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")]
RubricOpt = Annotated[Path | None, typer.Option("--rubric", help="Rubric YAML for the judges.")]
NoPreflightOpt = Annotated[
    bool,
    typer.Option("--no-preflight", help="Start without first checking each model endpoint with one request."),
]


def _choices(name: str, field: str) -> type[StrEnum]:
    """A flag's choices, read from the schema's own Literal so the CLI and a spec cannot drift apart."""
    values = get_args(ModelSettings.model_fields[field].annotation)
    return StrEnum(name, {value.replace("-", "_"): value for value in values})  # type: ignore[return-value]


Structured = _choices("Structured", "structured")
TurnMode = _choices("TurnMode", "turn_mode")


StructuredOpt = Annotated[
    Structured,
    typer.Option(
        "--structured",
        help="Structured output: auto, json_schema (a schema in response_format), json_object or none (prompt only).",
    ),
]
TurnModeOpt = Annotated[TurnMode, typer.Option("--turn-mode", help="auto, two-call (small models) or one-call.")]
RunFolderArg = Annotated[Path, typer.Argument(help="A run folder under runs/.")]


def fail(message: str, code: int = 2) -> None:
    """One line, whatever the terminal's width: scripts and CI logs grep for it. A message of several
    lines (one problem each, as the preflight's) prints each as an error line of its own."""
    for line in message.splitlines() or [""]:
        err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    raise typer.Exit(code)


def preflight_or_fail(settings: list[ModelSettings], cassette: Path | None, record: bool) -> None:
    """Each endpoint these settings need, checked once (:mod:`sandbox.preflight`); a line per failing one."""
    from sandbox.preflight import PreflightError, require_ready

    try:
        require_ready(settings, cassette, record)
    except PreflightError as exc:
        fail(str(exc))


def open_run(run: Path) -> None:
    """A run folder whose manifest reads, or a one-line error naming the folder and what is wrong."""
    from sandbox.runfolder import NotARunFolderError, RunFolder

    try:
        RunFolder(run).manifest()
    except NotARunFolderError as exc:
        fail(str(exc))


def project_path(relative: str, fallback: Path) -> Path:
    """Content in the working directory wins (a user's own project); else the package's copy."""
    local = Path.cwd() / relative
    return local if local.exists() else fallback


def default_personas() -> Path:
    return project_path("personas", DEFAULT_ROOT)


def open_catalog(personas: Path | None) -> Catalog:
    """The catalog, or a one-line error naming the bad file."""
    try:
        return load_catalog(personas or default_personas())
    except CatalogError as exc:
        fail(str(exc))
        raise  # unreachable; for type checkers


def open_rubric(path: Path | None) -> Rubric:
    """The rubric (the working directory's, else the package's), or a one-line error naming the bad file."""
    from sandbox.judge import DEFAULT_RUBRIC, load_rubric

    try:
        return load_rubric(path or project_path("judges/rubric.yaml", DEFAULT_RUBRIC))
    except CatalogError as exc:
        fail(str(exc))
        raise  # unreachable


def model_settings(model: str, api_base: str | None, **values: object) -> ModelSettings:
    """A role's settings from flags. ``--api-base`` is for the user's own server, never the embedded model."""
    from sandbox.profiles import is_embedded

    plain = {k: v.value if isinstance(v, StrEnum) else v for k, v in values.items()}
    settings = ModelSettings(model=model, **plain)  # type: ignore[arg-type]
    return settings if is_embedded(settings) or api_base is None else settings.model_copy(update={"api_base": api_base})


@contextlib.contextmanager
def models_ready(settings: list[ModelSettings], cassette: Path | None, record: bool, slots: int) -> Iterator[Profiles]:
    """The library's model runtime, its start-up errors (no weights, a missing cassette) as one line."""
    from sandbox.local_server import LocalModelError
    from sandbox.runtime import model_runtime

    if record and cassette is None:
        fail("--record needs --cassette PATH")
    with contextlib.ExitStack() as stack:
        try:
            profiles = stack.enter_context(model_runtime(settings, cassette, record, slots=slots))
        except (LocalModelError, FileNotFoundError) as exc:
            fail(str(exc))
        yield profiles


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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
