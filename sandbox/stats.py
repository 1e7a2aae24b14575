"""Statistics over the results table: pure functions, each delegating the statistics to a library.

Intervals: scipy's bootstrap for means and paired differences, statsmodels' Wilson interval for
rates. Tests: scipy's Wilcoxon signed-rank over matched episodes, Holm-corrected with statsmodels.
With n pairs the smallest two-sided signed-rank p is 2 / 2**n (every difference the same sign), so
below :func:`min_pairs` pairs (6 at 0.05) no outcome could be significant: no p is given, and why.
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
ALPHA = 1 - CONFIDENCE  # the level the paired tests are read at
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


def rates(frame: pd.DataFrame, columns: Sequence[str], by: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Per group and column, the share of finished episodes where the (true/false) column is true, with a
    Wilson interval. Failed episodes are not outcomes; an episode with no value (a metric recorded
    before it existed) is left out of that column's n."""
    episodes = episode_level(frame)
    episodes = episodes[episodes["status"] == "ok"]
    rows = []
    for keys, group in episodes.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        groups = dict(zip(by, keys, strict=True))
        for column in columns:
            values = group[column].dropna().astype(bool) if column in group else pd.Series(dtype=bool)
            n, k = len(values), int(values.sum())
            low, high = wilson(k, n)
            rows.append(groups | {"measure": column, "n": n, "k": k, "rate": k / n if n else math.nan,
                                  "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(rows)


def deal_rates(frame: pd.DataFrame, by: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Deal rate per group with a Wilson interval (failed episodes excluded: they are not outcomes)."""
    table = rates(frame, ["m_deal"], by)
    return table.drop(columns="measure").rename(columns={"k": "deals"}) if not table.empty else table


def matched_pairs(episodes: pd.DataFrame, metric: str, strategy: str, baseline: str) -> pd.DataFrame:
    """The matched cells (indexed by :data:`MATCH_KEYS`) where both strategies have a value on ``metric``:
    columns ``a`` (strategy) and ``b`` (baseline), and ``a_id``, ``b_id`` (their episode ids) when the
    frame has ids. The one pairing: the paired tests and the trainers' contrast packs both use it."""
    keys = [k for k in MATCH_KEYS if k in episodes]
    ids = ["episode_id"] if "episode_id" in episodes else []
    sides = episodes[episodes["strategy"].isin([strategy, baseline])]
    # Paired in plain Python: pandas' index alignment on six key columns cost about 40 ms a call,
    # and the coverage simulations pair thousands of times; a run's frame is small enough for dicts.
    cells = list(zip(*(sides[k].tolist() for k in keys), strict=True)) if keys else [()] * len(sides)
    values = pd.to_numeric(sides[metric], errors="coerce").astype(float).tolist()
    episode_ids = sides["episode_id"].tolist() if ids else [None] * len(sides)
    found: dict[str, dict[tuple, tuple[float, object]]] = {strategy: {}, baseline: {}}
    for cell, side, value, episode_id in zip(cells, sides["strategy"].tolist(), values, episode_ids, strict=True):
        if not math.isnan(value):
            found[side].setdefault(cell, (value, episode_id))
    mine, base = found[strategy], found[baseline]
    matched = [cell for cell in mine if cell in base]
    columns: dict[str, list] = {"a": [mine[c][0] for c in matched], "b": [base[c][0] for c in matched]}
    if ids:
        columns |= {"a_id": [mine[c][1] for c in matched], "b_id": [base[c][1] for c in matched]}
    if len(keys) == 1:
        index = pd.Index([c[0] for c in matched], name=keys[0], dtype=episodes[keys[0]].dtype)
    else:
        index = pd.MultiIndex.from_arrays(
            [pd.array([c[i] for c in matched], dtype=episodes[k].dtype) for i, k in enumerate(keys)], names=keys
        )
    joined = pd.DataFrame(columns, index=index)
    joined[["a", "b"]] = joined[["a", "b"]].astype(float)
    if ids:
        joined[["a_id", "b_id"]] = joined[["a_id", "b_id"]].astype(episodes["episode_id"].dtype)
    return joined


def matched_differences(episodes: pd.DataFrame, metric: str, strategy: str, baseline: str) -> pd.Series:
    """strategy minus baseline on ``metric`` for every matched cell where both have a value."""
    joined = matched_pairs(episodes, metric, strategy, baseline)
    return joined["a"] - joined["b"]


def min_pairs(alpha: float = ALPHA) -> int:
    """The fewest pairs with which a two-sided Wilcoxon signed-rank test can reach ``alpha``: the
    smallest n with 2 / 2**n <= alpha (6 at 0.05)."""
    return max(1, math.ceil(1 + math.log2(1 / alpha) - 1e-12))


def wilcoxon_p(differences: Sequence[float], alpha: float = ALPHA) -> tuple[float, str | None]:
    """Two-sided Wilcoxon signed-rank p, or NaN and the reason there is none.

    No pairs, or too few to reach ``alpha`` whatever they show, give no p (a p of 1.0 would read as
    "tested, no difference"). Enough pairs that all differ by zero is a real result: p = 1.
    """
    data = np.asarray(differences, dtype=float)
    if data.size == 0:
        return math.nan, "no matched pairs"
    if data.size < min_pairs(alpha):
        return math.nan, f"too few pairs: {data.size}"
    if np.all(data == 0):
        return 1.0, None
    p = float(scistats.wilcoxon(data, zero_method="zsplit", alternative="two-sided").pvalue)
    return (p, None) if not math.isnan(p) else (math.nan, "test not computable")


def paired_comparisons(frame: pd.DataFrame, metrics: Sequence[str], baseline: str) -> pd.DataFrame:
    """Each strategy against the baseline on each metric: paired effect, bootstrap CI, Wilcoxon p, Holm.

    The Holm correction runs over the family of comparisons that have a p (every strategy x metric
    with enough pairs); one without keeps NaN in ``p`` and ``p_holm`` and says why in ``p_note``.
    A single pair gives an effect but no interval (NaN in ``ci_low`` and ``ci_high``).
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
            if len(diffs) < 2:  # one difference has no spread to resample: no interval, as no p
                low = high = math.nan
            p, note = wilcoxon_p(diffs.tolist())
            pair = {"strategy": strategy, "baseline": baseline, "metric": metric, "n_pairs": len(diffs)}
            rows.append(pair | {"effect": effect, "ci_low": low, "ci_high": high, "p": p, "p_note": note})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = math.nan
        tested = table["p"].notna()
        if tested.any():
            table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p"].to_numpy(), method="holm")[1]
    return table


def mixed_effects(frame: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """``metric ~ strategy`` with prospect and scenario as crossed random intercepts (statsmodels MixedLM).

    Reported beside the paired tests: the paired test conditions on exact cells, this model pools
    information across prospects and scenarios. A fit that does not converge says so.
    """
    import warnings

    import statsmodels.formula.api as smf

    episodes = episode_level(frame)
    episodes = episodes[episodes["status"] == "ok"]
    data = episodes[["strategy", "prospect", "scenario", metric]].copy()
    data["y"] = pd.to_numeric(data[metric], errors="coerce").astype(float)
    data = data.dropna(subset=["y"])
    strategies = [baseline] + sorted(set(data["strategy"]) - {baseline})
    if len(strategies) < 2 or data["y"].nunique() < 2:
        return pd.DataFrame()
    data["strategy"] = pd.Categorical(data["strategy"], categories=strategies)
    data["whole"] = 1
    components = {name: f"0 + C({name})" for name in ("prospect", "scenario") if data[name].nunique() > 1}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smf.mixedlm("y ~ C(strategy)", data, groups="whole", vc_formula=components or None)
        fit = model.fit(reml=True, method=["lbfgs", "powell"])
    intervals = fit.conf_int(alpha=1 - CONFIDENCE)
    rows = []
    for strategy in strategies[1:]:
        term = f"C(strategy)[T.{strategy}]"
        if term not in fit.params:
            continue
        rows.append(
            {
                "strategy": strategy,
                "baseline": baseline,
                "metric": metric,
                "effect": float(fit.params[term]),
                "ci_low": float(intervals.loc[term, 0]),
                "ci_high": float(intervals.loc[term, 1]),
                "p": float(fit.pvalues[term]),
                "converged": bool(fit.converged) and not any("converge" in str(w.message).lower() for w in caught),
            }
        )
    return pd.DataFrame(rows)


def mean_ranks(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rank strategies within each complete matched cell (1 = best), then mean rank with a bootstrap CI."""
    episodes = episode_level(frame)
    episodes = episodes[episodes["status"] == "ok"]
    keys = [k for k in MATCH_KEYS if k in episodes]
    values = episodes[["strategy", *keys, metric]].copy()
    values[metric] = pd.to_numeric(values[metric], errors="coerce").astype(float)
    wide = values.pivot_table(index=keys, columns="strategy", values=metric, aggfunc="mean").dropna()
    if wide.empty:
        return pd.DataFrame()
    ranks = wide.rank(axis=1, ascending=False, method="average")
    rows = []
    for strategy in ranks.columns:
        mean, low, high = bootstrap_mean(ranks[strategy].tolist())
        rows.append({"strategy": strategy, "metric": metric, "cells": len(ranks), "mean_rank": mean,
                     "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(rows).sort_values("mean_rank").reset_index(drop=True)


def judge_agreement(frame: pd.DataFrame, criteria: Sequence[str] | None = None) -> pd.DataFrame:
    """Krippendorff's alpha (ordinal) between judge models, per criterion, over episodes they share."""
    import krippendorff

    if "judge_model" not in frame or frame["judge_model"].nunique() < 2:
        return pd.DataFrame()
    columns = list(criteria) if criteria else [c for c in frame.columns if c.startswith("score_") and c != "score_mean"]
    rows = []
    for column in columns:
        wide = frame.pivot_table(index="judge_model", columns="episode_id", values=column, aggfunc="mean")
        data = wide.to_numpy(dtype=float)
        units = int((np.sum(~np.isnan(data), axis=0) >= 2).sum())
        alpha = math.nan
        if units >= 2 and len(np.unique(data[~np.isnan(data)])) > 1:
            alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
        rows.append({"criterion": column.removeprefix("score_"), "judges": data.shape[0], "episodes": units,
                     "alpha": alpha})  # fmt: skip
    return pd.DataFrame(rows)
