"""The tidy results table: one row per episode x judge model, axes, metrics and rubric scores as columns.

Readable with one line of pandas: ``pd.read_parquet("runs/<run-id>/results.parquet")``.

A failed episode is not an outcome: its outcome columns (``m_*``) hold null (pandas' nullable
``boolean``/``Int64``/``Float64``/``string`` dtypes, kept by Parquet), so ``df.m_deal.mean()`` is the
deal rate of finished episodes. The metrics the runner computed from a failed episode's partial
transcript stay in ``episodes.jsonl`` as evidence; they never reach the table.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sandbox.metrics import OutcomeMetrics
from sandbox.results import EpisodeResult
from sandbox.runfolder import RunFolder

# Per-episode totals that the table already has as its own columns (cost_usd, tokens, model_calls).
_TOTALS = {"tokens_in", "tokens_out", "cost_usd", "model_calls"}


def _nullable(annotation: Any) -> str:
    """The pandas nullable dtype for a metric's type: missing stays missing, through Parquet too."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return {bool: "boolean", int: "Int64", float: "Float64"}.get(annotation, "string")


OUTCOME_COLUMNS: dict[str, str] = {
    f"m_{name}": _nullable(field.annotation)
    for name, field in OutcomeMetrics.model_fields.items()
    if name not in _TOTALS
}


def axes(result: EpisodeResult) -> dict[str, Any]:
    """An episode's identity and axes, as the table's first columns (the chat export's metadata uses them too)."""
    spec = result.spec
    return {
        "run_id": result.run_id,
        "episode_id": result.episode_id,
        "strategy": spec.strategy,
        "prospect": spec.prospect,
        "scenario": spec.scenario,
        "seed": spec.seed,
        "opener": spec.opener,
        "rep_model": spec.rep_model.model,
        "prospect_model": spec.prospect_model.model,
    }


def rows(result: EpisodeResult) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        **axes(result),
        "status": result.status,
        "error": result.error,
        "cost_usd": result.cost_usd,
        "tokens": result.tokens,
        "model_calls": result.model_calls,
        "cached_calls": result.cached_calls,
        "wall_time_s": result.wall_time_s,
    }
    measured = result.measured() if result.status == "ok" else None
    metrics = measured.model_dump(mode="json") if measured is not None else {}
    for column in OUTCOME_COLUMNS:
        base[column] = metrics.get(column.removeprefix("m_"))  # a failed episode: None in every one
    if not result.judgements:
        return [{**base, "judge_model": None}]
    out = []
    for judgement in result.judgements:
        row = {
            **base,
            "judge_model": judgement.judge_model,
            "judge_self_preference": ",".join(judgement.self_preference) or None,
            "judge_unsupported": judgement.unsupported,
            "judge_failed": len(judgement.failures),
        }
        scored = judgement.scored
        for score in judgement.scores:
            row[f"score_{score.criterion}"] = scored.get(score.criterion)
        row["score_mean"] = sum(scored.values()) / len(scored) if scored else None
        out.append(row)
    return out


def frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows into the table, outcome columns in their nullable dtypes (present even if every episode failed)."""
    table = pd.DataFrame.from_records(list(records))
    for column, dtype in OUTCOME_COLUMNS.items():
        table[column] = (table[column] if column in table else pd.Series(pd.NA, index=table.index)).astype(dtype)
    return table


def results_frame(folder: RunFolder | Path | str) -> pd.DataFrame:
    """Streamed: one result at a time is read (the latest line per episode), only its small rows kept."""
    return frame(row for result in RunFolder.of(folder).latest() for row in rows(result))


def export(folder: RunFolder | Path | str, fmt: Literal["parquet", "csv"] = "parquet", out: Path | None = None) -> Path:
    run = RunFolder.of(folder)
    table = results_frame(run)
    target = out or (run.table_path if fmt == "parquet" else run.path / run.TABLE_CSV)
    if fmt == "parquet":
        table.to_parquet(target, engine="pyarrow", index=False)
    else:
        table.to_csv(target, index=False)
    return target
