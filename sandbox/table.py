"""The tidy results table: one row per episode x judge model, axes, metrics and rubric scores as columns.

Readable with one line of pandas: ``pd.read_parquet("runs/<run-id>/results.parquet")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sandbox.results import EpisodeResult
from sandbox.store import read_results

TABLE = "results.parquet"


def rows(result: EpisodeResult) -> list[dict[str, Any]]:
    spec = result.spec
    base: dict[str, Any] = {
        "run_id": result.run_id,
        "episode_id": result.episode_id,
        "strategy": spec.strategy,
        "prospect": spec.prospect,
        "scenario": spec.scenario,
        "seed": spec.seed,
        "opener": spec.opener,
        "rep_model": spec.rep_model.model,
        "prospect_model": spec.prospect_model.model,
        "status": result.status,
        "error": result.error,
        "cost_usd": result.cost_usd,
        "tokens": result.tokens,
        "model_calls": result.model_calls,
        "cached_calls": result.cached_calls,
        "wall_time_s": result.wall_time_s,
    }
    if result.metrics is not None:
        for name, value in result.metrics.model_dump(mode="json").items():
            if name not in {"tokens_in", "tokens_out", "cost_usd", "model_calls"}:
                base[f"m_{name}"] = value
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


def results_frame(folder: Path | str) -> pd.DataFrame:
    """Streamed: only the (small) rows are kept, the last line per episode winning."""
    by_episode: dict[str, list[dict[str, Any]]] = {}
    for result in read_results(folder):
        by_episode[result.episode_id] = rows(result)
    return pd.DataFrame.from_records([row for episode_rows in by_episode.values() for row in episode_rows])


def export(folder: Path | str, fmt: Literal["parquet", "csv"] = "parquet", out: Path | None = None) -> Path:
    folder = Path(folder)
    frame = results_frame(folder)
    target = out or folder / ("results.parquet" if fmt == "parquet" else "results.csv")
    if fmt == "parquet":
        frame.to_parquet(target, engine="pyarrow", index=False)
    else:
        frame.to_csv(target, index=False)
    return target
