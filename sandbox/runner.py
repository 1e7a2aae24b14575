"""Run an experiment: every episode of the grid, concurrently, resumable, within a budget.

Each finished episode (negotiation, metrics and judgements together) is appended to the run's
``episodes.jsonl`` at once, so an interrupted run resumes where it stopped and never pays twice:
finished ids are skipped, and the response cache answers repeated requests.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiolimiter import AsyncLimiter
from pydantic import BaseModel

from sandbox.catalog import Catalog
from sandbox.engine import run_episode
from sandbox.experiment import ExperimentSpec, expand
from sandbox.judge import case_from_transcript, judge
from sandbox.metrics import outcome_metrics
from sandbox.models import CALL_CONTEXT, CallContext
from sandbox.results import EpisodeResult
from sandbox.runlog import log, run_log
from sandbox.schemas import EpisodeSpec, OutcomeStatus, Rubric
from sandbox.store import RunStore, environment, read_results

OnResult = Callable[[EpisodeResult], None]
OnStart = Callable[[EpisodeSpec], None]


class SpecMismatchError(ValueError):
    """A resumed run folder was started from a different spec."""


@dataclass
class RunOptions:
    retry_failed: bool = False
    max_cost_usd: float | None = None
    cache: object | None = None  # sandbox.cache.ResponseCache
    on_start: OnStart | None = None
    on_result: OnResult | None = None
    local_slots: int | None = None  # the embedded server's parallel slots: requests to it at once


@dataclass(frozen=True)
class Tally:
    """What the end-of-run summary needs from one episode; full results stay on disk, not in memory."""

    strategy: str
    status: str
    error: str | None
    cost_usd: float
    deal: bool | None
    mean_score: float | None

    @classmethod
    def of(cls, result: EpisodeResult) -> Tally:
        return cls(
            strategy=result.spec.strategy,
            status=result.status,
            error=result.error,
            cost_usd=result.cost_usd,
            deal=result.metrics.deal if result.metrics is not None else None,
            mean_score=mean_rubric_score(result),
        )


@dataclass
class Plan:
    """What a (possibly resumed) run still has to do."""

    planned: list[EpisodeSpec]
    todo: list[EpisodeSpec]
    finished: dict[str, Tally] = field(default_factory=dict)

    @property
    def prior_cost(self) -> float:
        return sum(r.cost_usd for r in self.finished.values())


class StrategyLine(BaseModel):
    episodes: int
    failed: int
    deal_rate: float | None
    mean_score: float | None


class RunSummary(BaseModel):
    run_id: str
    folder: str
    planned: int
    finished_before: int
    ran: int
    ok: int
    failed: int
    failures_by_reason: dict[str, int]
    not_started: int
    stopped_for_budget: bool
    budget_usd: float | None
    cost_usd: float
    run_cost_usd: float
    calls_made: int
    cache_hits: int
    wall_time_s: float
    retries: int = 0
    per_strategy: dict[str, StrategyLine]


def plan_run(spec: ExperimentSpec, folder: Path, retry_failed: bool) -> Plan:
    planned = expand(spec)
    planned_ids = {e.episode_id for e in planned}
    finished: dict[str, Tally] = {}
    for result in read_results(folder):  # streamed: the last line per id wins (a retry supersedes)
        if result.episode_id in planned_ids:
            finished[result.episode_id] = Tally.of(result)
    if retry_failed:
        finished = {k: v for k, v in finished.items() if v.status == "ok"}
    todo = [e for e in planned if e.episode_id not in finished]
    return Plan(planned=planned, todo=todo, finished=finished)


def manifest_for(spec: ExperimentSpec, run_id: str, spec_path: str | None, planned: int) -> dict[str, object]:
    return {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(),
        "spec_path": spec_path,
        "spec_fingerprint": spec.fingerprint,
        "spec": spec.model_dump(mode="json"),
        "planned_episodes": planned,
        "models": sorted({m.model for m in spec.all_models()}),
        "environment": environment(),
    }


def check_resumable(store: RunStore, spec: ExperimentSpec) -> str:
    """The run id of a folder started from this very spec; anything else is refused in one line."""
    if not store.manifest_path.exists():
        raise SpecMismatchError(f"{store.folder}: no {store.manifest_path.name}; not a run folder")
    manifest = store.read_manifest()
    if manifest.get("spec_fingerprint") != spec.fingerprint:
        raise SpecMismatchError(
            f"{store.folder}: started from a different spec (fingerprint {manifest.get('spec_fingerprint')}, "
            f"now {spec.fingerprint}); start a new run instead"
        )
    return str(manifest["run_id"])


_GAVE_UP = re.compile(r"failed after (\d+) attempt\(s\): (\w+)")


def short_reason(error: str | None) -> str:
    """Group failures by kind (the exception class, or what was wrong), without request detail."""
    if not error:
        return "unknown"
    gave_up = _GAVE_UP.search(error)
    if gave_up:
        return f"{gave_up.group(2)} after {gave_up.group(1)} attempts"
    for marker in ("cassette miss", "returned invalid", "gave no usable message"):
        if marker in error:
            return marker
    return error.split(": ", 1)[-1][:60]


def in_flight_places(spec: ExperimentSpec, local_slots: int | None) -> dict[str, asyncio.Semaphore]:
    """Per-model caps on requests at once. The embedded server gets one place per slot, so a request
    never waits (and times out) in llama.cpp's queue behind other requests."""
    places = {m: asyncio.Semaphore(r.max_in_flight) for m, r in spec.rate_limits.items() if r.max_in_flight}
    if local_slots and "local" not in places:
        places["local"] = asyncio.Semaphore(local_slots)
    return places


def limiters(spec: ExperimentSpec) -> tuple[dict[str, AsyncLimiter], dict[str, AsyncLimiter]]:
    requests = {
        m: AsyncLimiter(r.requests_per_minute, 60) for m, r in spec.rate_limits.items() if r.requests_per_minute
    }
    tokens = {m: AsyncLimiter(r.tokens_per_minute, 60) for m, r in spec.rate_limits.items() if r.tokens_per_minute}
    return requests, tokens


async def run_one(
    run_id: str,
    episode: EpisodeSpec,
    spec: ExperimentSpec,
    catalog: Catalog,
    rubric: Rubric | None,
    local_api_base: str | None,
) -> EpisodeResult:
    started = time.perf_counter()
    try:
        transcript = await run_episode(episode, catalog, local_api_base)
    except Exception as exc:  # a bug or bad input must not take the run down: it is recorded
        return EpisodeResult(
            run_id=run_id,
            episode_id=episode.episode_id,
            spec=episode,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            wall_time_s=round(time.perf_counter() - started, 3),
        )
    judgements = []
    if transcript.outcome.status is not OutcomeStatus.FAILED and rubric is not None and transcript.turns:
        case = case_from_transcript(transcript)
        for settings in spec.models.judge:
            judgements.append(await judge(case, rubric, settings, local_api_base, seed=episode.seed))
    calls = transcript.calls + [c for j in judgements for c in j.calls]
    failed = transcript.outcome.status is OutcomeStatus.FAILED
    return EpisodeResult(
        run_id=run_id,
        episode_id=episode.episode_id,
        spec=episode,
        status="failed" if failed else "ok",
        error=transcript.outcome.reason if failed else None,
        transcript=transcript,
        metrics=outcome_metrics(transcript),
        judgements=judgements,
        cost_usd=sum(c.cost_usd or 0.0 for c in calls),
        tokens=sum(c.tokens_in + c.tokens_out for c in calls if not c.cached),
        model_calls=sum(1 for c in calls if not c.cached),
        cached_calls=sum(1 for c in calls if c.cached),
        wall_time_s=round(time.perf_counter() - started, 3),
    )


def _log_episode(result: EpisodeResult) -> None:
    spec = result.spec
    where = f"{spec.strategy} / {spec.prospect} / {spec.scenario} seed {spec.seed} opener {spec.opener}"
    tail = (
        f"calls {result.model_calls}, tokens {result.tokens}, cost ${result.cost_usd:.4f}, {result.wall_time_s:.1f} s"
    )
    if result.status == "ok":
        outcome = result.transcript.outcome.status.value if result.transcript is not None else "ok"
        log.info("episode %s (%s): ok, %s; %s", result.episode_id, where, outcome, tail)
    else:
        log.warning("episode %s (%s): failed: %s; %s", result.episode_id, where, result.error, tail)


def _log_end(summary: RunSummary) -> None:
    log.info(
        "run %s ended: %d ran, ok %d, failed %d%s, not started %d%s; calls %d (%d retries), cache hits %d, "
        "cost $%.4f, %.1f s",
        summary.run_id, summary.ran, summary.ok, summary.failed,
        f" {summary.failures_by_reason}" if summary.failures_by_reason else "",
        summary.not_started, " (budget reached)" if summary.stopped_for_budget else "",
        summary.calls_made, summary.retries, summary.cache_hits, summary.run_cost_usd, summary.wall_time_s,
    )  # fmt: skip


async def run_experiment(
    spec: ExperimentSpec,
    catalog: Catalog,
    rubric: Rubric | None,
    store: RunStore,
    run_id: str,
    plan: Plan,
    local_api_base: str | None,
    options: RunOptions,
) -> RunSummary:
    started = time.perf_counter()
    # Everything alive now (litellm and its providers: about a million objects) lives as long as the
    # process. Frozen, a full collection no longer walks it; unfrozen, each one stalled the event loop,
    # and with it every call in flight, for about 0.2 s (measured in bench/runner_bench.py).
    gc.freeze()
    budget = (
        min(b for b in (options.max_cost_usd, spec.budget_usd) if b is not None)
        if (options.max_cost_usd is not None or spec.budget_usd is not None)
        else None
    )
    request_limits, token_limits = limiters(spec)
    context = CallContext(
        cache=options.cache,
        request_limits=request_limits,
        token_limits=token_limits,
        in_flight=in_flight_places(spec, options.local_slots),
    )
    token = CALL_CONTEXT.set(context)
    queue: asyncio.Queue[EpisodeSpec] = asyncio.Queue()
    for episode in plan.todo:
        queue.put_nowait(episode)
    results: dict[str, Tally] = {}
    spent = {"cost": plan.prior_cost}
    stopped = {"budget": False}

    async def worker() -> None:
        while True:
            if budget is not None and spent["cost"] >= budget:
                if not stopped["budget"]:
                    log.warning("budget reached: spent $%.4f of $%.4f; no new episodes start", spent["cost"], budget)
                stopped["budget"] = True
                return
            try:
                episode = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if options.on_start:
                options.on_start(episode)
            result = await run_one(run_id, episode, spec, catalog, rubric, local_api_base)
            await store.append_async(result)
            _log_episode(result)
            results[result.episode_id] = Tally.of(result)
            spent["cost"] += result.cost_usd
            if options.on_result:
                options.on_result(result)

    with run_log(store.folder):
        log.info(
            "run %s: %d planned, %d to run, %d finished before; concurrency %d",
            run_id, len(plan.planned), len(plan.todo), len(plan.finished), spec.concurrency,
        )  # fmt: skip
        try:
            await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, max(1, len(plan.todo))))))
        finally:
            CALL_CONTEXT.reset(token)

        everything = {**plan.finished, **results}
        failures = Counter(short_reason(r.error) for r in everything.values() if r.status == "failed")
        summary = RunSummary(
            run_id=run_id,
            folder=str(store.folder),
            planned=len(plan.planned),
            finished_before=len(plan.finished),
            ran=len(results),
            ok=sum(1 for r in everything.values() if r.status == "ok"),
            failed=sum(1 for r in everything.values() if r.status == "failed"),
            failures_by_reason=dict(failures.most_common()),
            not_started=queue.qsize(),
            stopped_for_budget=stopped["budget"] and queue.qsize() > 0,
            budget_usd=budget,
            cost_usd=round(spent["cost"], 6),
            run_cost_usd=round(sum(r.cost_usd for r in results.values()), 6),
            calls_made=context.calls_made,
            retries=context.retries,
            cache_hits=context.cache_hits,
            wall_time_s=round(time.perf_counter() - started, 3),
            per_strategy=per_strategy(list(everything.values())),
        )
        _log_end(summary)
    return summary


def mean_rubric_score(result: EpisodeResult) -> float | None:
    scores = [s for j in result.judgements for s in j.scored.values()]
    return sum(scores) / len(scores) if scores else None


def per_strategy(tallies: list[Tally]) -> dict[str, StrategyLine]:
    lines: dict[str, StrategyLine] = {}
    for strategy in sorted({t.strategy for t in tallies}):
        mine = [t for t in tallies if t.strategy == strategy]
        ok = [t for t in mine if t.status == "ok" and t.deal is not None]
        scores = [t.mean_score for t in ok if t.mean_score is not None]
        lines[strategy] = StrategyLine(
            episodes=len(mine),
            failed=len(mine) - len(ok),
            deal_rate=sum(t.deal for t in ok) / len(ok) if ok else None,  # type: ignore[misc]
            mean_score=sum(scores) / len(scores) if scores else None,
        )
    return lines
