"""The run report: ``report.md`` and a self-contained ``report.html`` (plots and data inline).

Figures come from :mod:`sandbox.stats`; this module only arranges them, draws the plots with
matplotlib (embedded as base64 PNG, so the page opens with no network), and embeds the episodes
for the transcript browser, where every judge evidence quote is highlighted in its turn and every
episode with a faithfulness violation carries a badge (and can be filtered on).
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from sandbox import stats, table
from sandbox.amounts import money_text
from sandbox.content import CONTENT_ROOT
from sandbox.metrics import faithfulness_findings, is_unstated_offer
from sandbox.results import EpisodeResult
from sandbox.runfolder import RunFolder

TEMPLATES = Path(__file__).parent / "templates"
HEADLINE = ["score_mean", "m_deal", "m_discount_from_list", "m_prospect_movement_share"]
VIOLATED = "m_faithfulness_violated"
COMPARED = [*HEADLINE, VIOLATED]  # each strategy against the baseline, the violation rate too
# The faithfulness table's columns: per episode, true when it happened at least once.
FAITHFULNESS = {
    "f_below_floor": "rep offer below its floor",
    "f_above_walk_away": "prospect acceptance above its walk-away",
    "f_disclosed": "private figure disclosed",
    VIOLATED: "any violation",
    "f_unstated": "offer its message does not state",
}
VIOLATIONS_LISTED = 50  # episodes listed by name in the Markdown report
SMALL_N = 10  # below this many episodes per strategy, bootstrap intervals are too narrow to trust
CALIBRATION_DIR = CONTENT_ROOT / "judges" / "results"


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forest_plot(comparisons: pd.DataFrame, metric: str) -> str | None:
    rows = comparisons[comparisons["metric"] == metric].dropna(subset=["effect", "ci_low", "ci_high"])
    if rows.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
    y = list(range(len(rows)))
    ax.errorbar(
        rows["effect"],
        y,
        xerr=[rows["effect"] - rows["ci_low"], rows["ci_high"] - rows["effect"]],
        fmt="o",
        capsize=4,
    )
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, rows["strategy"])
    ax.set_xlabel(f"paired effect on {metric} vs {rows.iloc[0]['baseline']} (95% CI)")
    return _png(fig)


def heat_map(episodes: pd.DataFrame) -> str | None:
    criteria = [c for c in episodes.columns if c.startswith("score_") and c != "score_mean"]
    if not criteria or episodes.empty:
        return None
    table = episodes.groupby("strategy")[criteria].mean()
    if table.isna().all().all():
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(criteria), 0.8 + 0.45 * len(table)))
    image = ax.imshow(table.to_numpy(dtype=float), vmin=1, vmax=5, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(criteria)), [c.removeprefix("score_") for c in criteria], rotation=45, ha="right")
    ax.set_yticks(range(len(table)), table.index)
    fig.colorbar(image, ax=ax, label="mean score")
    return _png(fig)


def deal_vs_discount(episodes: pd.DataFrame) -> str | None:
    if episodes.empty or "m_deal" not in episodes:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for strategy, group in episodes.groupby("strategy"):
        rate = group["m_deal"].astype(float).mean()
        discount = pd.to_numeric(group.get("m_discount_from_list"), errors="coerce").astype(float).mean()  # NA: NaN
        ax.scatter([0 if math.isnan(discount) else discount], [rate], s=60, label=strategy)
    ax.set_xlabel("mean discount from list (deals only)")
    ax.set_ylabel("deal rate")
    ax.legend(fontsize=7)
    return _png(fig)


def interaction_plot(episodes: pd.DataFrame, metric: str = "score_mean") -> str | None:
    if episodes.empty or metric not in episodes:
        return None
    table = episodes.groupby(["prospect", "strategy"])[metric].mean().unstack()
    if table.isna().all().all():
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in table.columns:
        ax.plot(table.index, table[strategy], marker="o", label=strategy)
    ax.set_ylabel(f"mean {metric}")
    ax.set_xlabel("prospect")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    return _png(fig)


def calibration_figures(judge_models: list[str], folder: Path = CALIBRATION_DIR) -> list[dict[str, Any]]:
    """The recorded calibration of each judge model used, where one exists."""
    found = []
    for path in sorted(folder.glob("calibration-*.json")) if folder.is_dir() else []:
        for report in json.loads(path.read_text()):
            if report.get("judge_model") in judge_models:
                found.append(report)
    return found


BROWSER_LIMIT = 2000  # episodes embedded in the page; a bigger run's page would not open comfortably


def findings(result: EpisodeResult) -> list[str]:
    """A finished episode's faithfulness violations in words; worded only where its metrics found one."""
    metrics = result.measured() if result.status == "ok" else None
    if metrics is None or result.transcript is None or not metrics.faithfulness_violated:
        return []
    return faithfulness_findings(result.transcript)


def browser_episode(result: EpisodeResult, found: list[str] | None = None) -> dict[str, Any]:
    """What the transcript browser needs of one episode: evidence quotes attached to their turns, amounts
    in the scenario's own format, each turn's notes, and the faithfulness findings behind its badge."""
    transcript = result.transcript
    scenario = transcript.cast.scenario if transcript is not None else None
    turns = [] if transcript is None else [
        {"index": t.index, "speaker": t.speaker, "message": t.message,
         "action": t.action.kind.value, "price": t.action.price, "price_text": money_text(scenario, t.action.price),
         "notes": list(t.notes), "unstated": is_unstated_offer(t)}
        for t in transcript.turns
    ]  # fmt: skip
    evidence = [
        {"judge": j.judge_model, "criterion": s.criterion, "score": s.score, "turn": e.turn, "quote": e.quote}
        for j in result.judgements
        for s in j.scores
        for e in s.evidence
        if e.verified
    ]
    finished = result.status == "ok" and transcript is not None
    if found is None:  # the findings, where the caller has them already
        found = findings(result)
    price = transcript.outcome.price if transcript else None
    return {
        "id": result.episode_id,
        "strategy": result.spec.strategy,
        "prospect": result.spec.prospect,
        "scenario": result.spec.scenario,
        "seed": result.spec.seed,
        "opener": result.spec.opener,
        "status": result.status,
        "outcome": transcript.outcome.status.value if transcript else "failed",
        "price": price,
        "price_text": money_text(scenario, price) if scenario is not None else None,
        "error": result.error,
        "faithfulness": ("violation" if found else "faithful") if finished else "not measured (failed)",
        "findings": found,
        "unstated_offers": sum(1 for t in turns if t["unstated"]),
        "turns": turns,
        "evidence": evidence,
        "scores": {j.judge_model: j.scored for j in result.judgements},
    }


def whole(reason: str | None) -> str:
    """A reason on one line (a Markdown list item cannot span lines), every word of it kept."""
    return " ".join(reason.split()) if reason and reason.strip() else "unknown"


class RunReading:
    """What one streamed pass over the latest results gives the report: nothing else reads the run."""

    def __init__(self, browser_limit: int = BROWSER_LIMIT) -> None:
        self.browser_limit = browser_limit
        self.rows: list[dict[str, Any]] = []
        self.browser: list[dict[str, Any]] = []
        self.failures: Counter[str] = Counter()
        self.judge_failures: Counter[tuple[str, str, str]] = Counter()
        self.judge_failed_episodes: set[str] = set()
        self.violations: list[dict[str, Any]] = []  # the first VIOLATIONS_LISTED episodes with one
        self.violating = 0

    def add(self, result: EpisodeResult) -> None:
        self.rows.extend(table.rows(result))
        found = findings(result)
        if len(self.browser) < self.browser_limit:
            self.browser.append(browser_episode(result, found))
        if found:
            self.violating += 1
            if len(self.violations) < VIOLATIONS_LISTED:
                spec = result.spec
                self.violations.append({"id": result.episode_id, "strategy": spec.strategy, "prospect": spec.prospect,
                                        "scenario": spec.scenario, "seed": spec.seed, "findings": found})  # fmt: skip
        if result.status == "failed":
            self.failures[whole(result.error)] += 1
        for judgement in result.judgements:
            for criterion, reason in judgement.failures.items():
                self.judge_failures[(judgement.judge_model, criterion, whole(reason))] += 1
                self.judge_failed_episodes.add(result.episode_id)

    @classmethod
    def of(cls, run: RunFolder, browser_limit: int = BROWSER_LIMIT) -> RunReading:
        reading = cls(browser_limit)
        for result in run.latest():
            reading.add(result)
        return reading


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records")) if not frame.empty else []


def with_faithfulness(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with the faithfulness columns' per-episode indicators (null where not measured)."""
    out = frame.copy()
    out["f_below_floor"] = out["m_rep_offers_below_floor"] > 0
    out["f_above_walk_away"] = out["m_prospect_accepted_above_walk_away"]
    out["f_disclosed"] = out["m_rep_floor_disclosed"] | out["m_prospect_figure_disclosed"]
    out["f_unstated"] = out["m_unstated_offers"] > 0
    return out


def faithfulness_rows(frame: pd.DataFrame, by: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per group: each faithfulness column's count, share and Wilson interval, in FAITHFULNESS order."""
    long = stats.rates(with_faithfulness(frame), list(FAITHFULNESS), by)
    rows = []
    for keys, group in long.groupby(list(by), sort=True) if not long.empty else []:
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = {r["measure"]: r for r in _records(group)}
        rows.append(dict(zip(by, keys, strict=True)) | {"cells": [cells[c] for c in FAITHFULNESS]})
    return rows


def build(folder: RunFolder | Path | str) -> dict[str, Any]:
    """Everything the report shows, computed once from one streamed pass over the run."""
    run = RunFolder.of(folder)
    manifest = run.manifest()
    reading = RunReading.of(run)
    frame = table.frame(reading.rows)
    episodes = stats.episode_level(frame)
    ok = episodes[episodes["status"] == "ok"] if not episodes.empty else episodes
    spec = manifest.get("spec", {})
    baseline = spec.get("baseline") or (sorted(ok["strategy"].unique())[0] if not ok.empty else None)
    metrics = [m for m in HEADLINE if m in episodes]
    compared = [m for m in COMPARED if m in episodes]
    comparisons = stats.paired_comparisons(frame, compared, baseline) if baseline and not ok.empty else pd.DataFrame()
    fitted = ("score_mean", "m_deal") if baseline and not ok.empty else ()
    fits = [stats.mixed_effects(frame, m, baseline) for m in fitted if m in episodes]
    mixed = pd.concat(fits) if fits else pd.DataFrame()
    judge_models = sorted({m for m in frame.get("judge_model", pd.Series(dtype=str)).dropna().unique()})
    self_preference = sorted({m for m in frame.get("judge_self_preference", pd.Series(dtype=str)).dropna()})
    cells = (
        episodes.groupby(["strategy", "prospect", "scenario"]).size().rename("n").reset_index()
        if not episodes.empty
        else pd.DataFrame()
    )
    per_strategy_n = episodes[episodes["status"] == "ok"].groupby("strategy").size() if not episodes.empty else []
    return {
        "small_n": bool(len(per_strategy_n)) and int(min(per_strategy_n)) < SMALL_N,
        "run_id": manifest.get("run_id", run.path.name),
        "manifest": manifest,
        "spec": spec,
        "baseline": baseline,
        "episodes_total": len(episodes),
        "episodes_ok": int((episodes["status"] == "ok").sum()) if not episodes.empty else 0,
        "failures": dict(reading.failures.most_common()),
        "judge_failures": [
            {"judge": judge, "criterion": criterion, "reason": reason, "n": n}
            for (judge, criterion, reason), n in reading.judge_failures.most_common()
        ],
        "judge_failures_total": sum(reading.judge_failures.values()),
        "judge_failed_episodes": len(reading.judge_failed_episodes),
        "min_pairs": stats.min_pairs(),
        "alpha": stats.ALPHA,
        "cost_usd": float(frame.drop_duplicates("episode_id")["cost_usd"].sum()) if not frame.empty else 0.0,
        "cells": _records(cells),
        "deal_rates": _records(stats.deal_rates(frame)) if not ok.empty else [],
        "faithfulness_columns": list(FAITHFULNESS.values()),
        "faithfulness": faithfulness_rows(frame, ("strategy",)) if not ok.empty else [],
        "faithfulness_by_prospect": faithfulness_rows(frame, ("strategy", "prospect")) if not ok.empty else [],
        "violations": reading.violations,
        "violating": reading.violating,
        "summary": _records(stats.summarise(frame, metrics)) if not ok.empty else [],
        "breakdowns": {
            axis: _records(stats.summarise(frame, ["score_mean"], by=("strategy", axis)))
            for axis in ("prospect", "scenario", "rep_model")
            if not ok.empty and "score_mean" in episodes
        },
        "spec_json": json.dumps(spec, indent=2),
        "comparisons": _records(comparisons),
        "mixed": _records(mixed),
        "ranks": _records(stats.mean_ranks(frame, "score_mean")) if "score_mean" in episodes else [],
        "agreement": _records(stats.judge_agreement(frame)),
        "judge_models": judge_models,
        "self_preference": self_preference,
        "calibration": calibration_figures(judge_models),
        "plots": {
            "forest": forest_plot(comparisons, "score_mean") if not comparisons.empty else None,
            "heat": heat_map(ok),
            "deal_discount": deal_vs_discount(ok),
            "interaction": interaction_plot(ok),
        },
        "browser": reading.browser,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True
    )
    env.filters["fmt"] = _fmt
    env.filters["md_cell"] = lambda v: str(v).replace("|", "\\|")  # a pipe would end a Markdown table cell
    env.filters["tojson_safe"] = lambda v: json.dumps(v).replace("</", "<\\/")
    return env


def write_report(folder: RunFolder | Path | str) -> tuple[Path, Path]:
    run = RunFolder.of(folder)
    data = build(run)
    env = _env()
    md = run.report_md_path
    html = run.report_html_path
    md.write_text(env.get_template("report.md.j2").render(**data))
    html.write_text(env.get_template("report.html.j2").render(**data))
    return md, html


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot(html: Path, out: Path | None = None, width: int = 1200) -> Path:
    """A full-page PNG of the report, taken with the system's Chromium through Playwright."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise RuntimeError("no Chromium found; install it (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError("playwright is not installed; run: pip install playwright") from exc
    out = out or html.with_suffix(".png")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return out
