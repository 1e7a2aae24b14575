"""Statistics over the results table: pure functions, each delegating the statistics to a library.

Intervals: scipy's bootstrap for means and paired differences, statsmodels' Wilson interval for
rates. Tests: scipy's Wilcoxon signed-rank over matched episodes, Holm-corrected with statsmodels.
The table has one row per episode x judge; outcome metrics are per episode, so comparisons run on
:func:`episode_level`, where judge scores are averaged over the judges of an episode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scistats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

AXES = ["strategy", "prospect", "scenario", "seed", "opener", "rep_model", "prospect_model"]
# What makes two episodes of different strategies a matched pair: everything but the strategy.
MATCH_KEYS = ["prospect", "scenario", "seed", "opener", "rep_model", "prospect_model"]
CONFIDENCE = 0.95
RESAMPLES = 2000


def episode_level(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per episode: axes and outcome metrics once, judge scores averaged over judges."""
    if frame.empty:
        return frame
    score_columns = [c for c in frame.columns if c.startswith("score_")]
    first_columns = [c for c in frame.columns if c not in score_columns and c != "episode_id"]
    grouped = frame.groupby("episode_id", sort=False)
    out = grouped[first_columns].first()
    if score_columns:
        out = out.join(grouped[score_columns].mean())
    return out.reset_index()


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def bootstrap_mean(
    values: Sequence[float], confidence: float = CONFIDENCE, seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI; with fewer than two values (or no spread) the CI is the mean."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if data.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if data.size < 2 or np.all(data == data[0]):
        return (mean, mean, mean)
    result = scistats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarise(frame: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Mean and 95% bootstrap CI of each metric per group (episode level)."""
    episodes = episode_level(frame)
    rows = []
    for keys, group in episodes.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for metric in metrics:
            if metric not in group:
                continue
            values = pd.to_numeric(group[metric], errors="coerce").dropna().tolist()
            mean, low, high = bootstrap_mean(values)
            groups = dict(zip(by, keys, strict=True))
            rows.append(groups | {"metric": metric, "n": len(values), "mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def deal_rates(frame: pd.DataFrame, by: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Deal rate per group with a Wilson interval (failed episodes excluded: they are not outcomes)."""
    episodes = episode_level(frame)
    episodes = episodes[episodes["status"] == "ok"]
    rows = []
    for keys, group in episodes.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        n = len(group)
        deals = int(group["m_deal"].astype(bool).sum())
        low, high = wilson(deals, n)
        rate = deals / n if n else math.nan
        groups = dict(zip(by, keys, strict=True))
        rows.append(groups | {"n": n, "deals": deals, "rate": rate, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def matched_differences(episodes: pd.DataFrame, metric: str, strategy: str, baseline: str) -> pd.Series:
    """strategy minus baseline on ``metric`` for every matched cell where both have a value."""
    keys = [k for k in MATCH_KEYS if k in episodes]
    values = episodes[["strategy", *keys, metric]].copy()
    values[metric] = pd.to_numeric(values[metric], errors="coerce").astype(float)
    mine = values[values["strategy"] == strategy].drop(columns="strategy").set_index(keys)[metric]
    base = values[values["strategy"] == baseline].drop(columns="strategy").set_index(keys)[metric]
    joined = pd.concat([mine.rename("a"), base.rename("b")], axis=1, join="inner").dropna()
    return joined["a"] - joined["b"]


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p; no non-zero difference means no evidence (p = 1)."""
    data = np.asarray(differences, dtype=float)
    if data.size == 0 or np.all(data == 0):
        return 1.0
    return float(scistats.wilcoxon(data, zero_method="zsplit", alternative="two-sided").pvalue)


def paired_comparisons(frame: pd.DataFrame, metrics: Sequence[str], baseline: str) -> pd.DataFrame:
    """Each strategy against the baseline on each metric: paired effect, bootstrap CI, Wilcoxon p, Holm.

    The Holm correction runs over the whole family (every strategy x metric comparison).
    """
    episodes = episode_level(frame)
    episodes = episodes[episodes["status"] == "ok"]
    rows = []
    for metric in metrics:
        if metric not in episodes:
            continue
        for strategy in sorted(set(episodes["strategy"]) - {baseline}):
            diffs = matched_differences(episodes, metric, strategy, baseline)
            effect, low, high = bootstrap_mean(diffs.tolist())
            pair = {"strategy": strategy, "baseline": baseline, "metric": metric, "n_pairs": len(diffs)}
            rows.append(pair | {"effect": effect, "ci_low": low, "ci_high": high, "p": wilcoxon_p(diffs.tolist())})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = multipletests(table["p"].to_numpy(), method="holm")[1]
    return table
