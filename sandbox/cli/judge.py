"""``sandbox judge``: score a transcript against the rubric, or ``sandbox judge calibrate`` the judge models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sandbox.catalog import CatalogError
from sandbox.cli.common import (
    ApiBaseOpt,
    CassetteOpt,
    PersonasOpt,
    RecordOpt,
    RubricOpt,
    Structured,
    StructuredOpt,
    app,
    console,
    fail,
    fmt,
    model_settings,
    models_ready,
    open_catalog,
    open_rubric,
    project_path,
    render_panel,
)


@app.command("judge")
def judge_command(
    target: Annotated[str, typer.Argument(help="A transcript JSON file, or 'calibrate' to score the calibration set.")],
    model: Annotated[list[str] | None, typer.Option("--model", help="Judge model(s); repeatable.")] = None,
    api_base: ApiBaseOpt = None,
    rubric: RubricOpt = None,
    calibration: Annotated[Path | None, typer.Option("--calibration", help="Calibration set folder.")] = None,
    verbosity_cases: Annotated[int, typer.Option("--verbosity-cases", help="Cases re-judged with padding.")] = 6,
    out: Annotated[Path | None, typer.Option("--out", help="Write the judgement / calibration JSON here.")] = None,
    cassette: CassetteOpt = None,
    record: RecordOpt = False,
    structured: StructuredOpt = Structured.auto,
    personas: PersonasOpt = None,
) -> None:
    """Score a transcript against the rubric, or calibrate judge models (`sandbox judge calibrate`)."""
    from pydantic import ValidationError

    from sandbox.schemas import Transcript

    try:
        judges = [model_settings(m, api_base, structured=structured) for m in (model or ["local"])]
    except ValidationError as exc:
        from sandbox.catalog import describe_validation_error

        fail(describe_validation_error("command line", exc))
    loaded_rubric = open_rubric(rubric)
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
    with models_ready(judges, cassette, record, slots=4) as profiles:
        panel = asyncio.run(judge_panel(case, loaded_rubric, [profiles[j] for j in judges]))
    render_panel(panel, case, loaded_rubric)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(panel.model_dump_json(indent=2))
        console.print(f"judgement written to {out}")


def _calibrate(judges, rubric, folder, verbosity_cases, out, cassette, record, personas) -> None:  # noqa: ANN001
    import json

    from sandbox.calibration import DEFAULT_SET, calibrate, load_calibration

    catalog = open_catalog(personas)
    try:
        cases = load_calibration(folder or project_path("judges/calibration", DEFAULT_SET), rubric, catalog)
    except CatalogError as exc:
        fail(str(exc))
    reports = []
    with models_ready(judges, cassette, record, slots=4) as profiles:
        for settings in judges:
            console.print(f"calibrating {settings.model} on {len(cases)} cases ...")
            report, _ = asyncio.run(
                calibrate(cases, rubric, catalog, profiles[settings], verbosity_cases=verbosity_cases)
            )
            render_calibration(report)
            reports.append(report)
    target = out or Path("runs") / "calibration.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([r.model_dump(mode="json") for r in reports], indent=2) + "\n")
    console.print(f"calibration written to {target}")


def render_calibration(report) -> None:  # noqa: ANN001
    table = Table(title=f"Calibration of {report.judge_model} ({report.cases} cases, rubric {report.rubric_id})")
    for col in ("criterion", "n", "Spearman", "QW kappa", "MAE"):
        table.add_column(col, justify="right" if col != "criterion" else "left")
    for criterion, a in report.per_criterion.items():
        table.add_row(criterion, str(a.n), fmt(a.spearman), fmt(a.qwk), fmt(a.mae))
    o = report.overall
    table.add_row("[bold]overall[/]", str(o.n), fmt(o.spearman), fmt(o.qwk), fmt(o.mae))
    console.print(table)
    console.print(
        f"scored {report.scored}, failed {report.failed}, unsupported evidence share {fmt(report.unsupported_share)}"
    )
    console.print(
        f"attack success rate: {fmt(report.attack_success_rate)} over {report.manipulation_cases} manipulation cases"
    )
    shift = report.verbosity_shift
    verdict = "-" if shift is None else ("within" if abs(shift) <= report.verbosity_tolerance else "OUTSIDE")
    console.print(
        f"verbosity shift (padded minus plain, mean score): {fmt(shift)} over {report.verbosity_cases} cases; "
        f"{verdict} tolerance ±{report.verbosity_tolerance}"
    )
