"""Run an experiment: every episode of the grid, concurrently, resumable, within a budget.

Each finished episode (negotiation, metrics and judgements together) is appended to the run's
``episodes.jsonl`` at once, so an interrupted run resumes where it stopped and never pays twice:
finished ids are skipped, and the response cache answers repeated requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from aiolimiter import AsyncLimiter
from pydantic import BaseModel

from sandbox.catalog import Catalog
from sandbox.episode import play_episode
from sandbox.experiment import ExperimentSpec, expand
from sandbox.models import CALL_CONTEXT, CallContext
from sandbox.profiles import Profiles
from sandbox.results import EpisodeResult
from sandbox.runfolder import NotARunFolderError, RunFolder
from sandbox.runlog import log, run_log
from sandbox.schemas import EpisodeSpec, ModelSettings, Rubric
from sandbox.store import RunStore, environment, new_run_id

OnResult = Callable[[EpisodeResult], None]
OnStart = Callable[[EpisodeSpec], None]


class SpecMismatchError(ValueError):
    """A resumed run folder was started from a different spec."""


@dataclass
class RunOptions:
    """What a run adds around executing its plan: a budget, the response cache, progress callbacks."""

    max_cost_usd: float | None = None
    cache: object | None = None  # sandbox.cache.ResponseCache
    on_start: OnStart | None = None
    on_result: OnResult | None = None


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
    for result in RunFolder(folder).latest(ids=planned_ids):  # a retry supersedes the line it retried
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
    try:
        manifest = RunFolder(store.folder).manifest()
    except NotARunFolderError as exc:
        raise SpecMismatchError(str(exc)) from None
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
    where = _WHERE.match(error)
    if where:  # a configuration error: "MODEL at URL (purpose): what is wrong: what to change [detail]"
        return error[where.end() :].split(" [", 1)[0].split(": ", 1)[0][:60]
    return error.split(": ", 1)[-1][:60]


_WHERE = re.compile(r"^(?:turn \d+: )?\S+(?: at \S+)? \([\w:.-]+\): ")


def in_flight_caps(spec: ExperimentSpec, profiles: Profiles) -> dict[str, int]:
    """Per-model caps on requests at once: the spec's, else the profile's own (the embedded server gets
    one place per slot, so a request never waits, and times out, in llama.cpp's queue)."""
    caps = {m: r.max_in_flight for m, r in spec.rate_limits.items() if r.max_in_flight}
    for profile in profiles.all():
        if profile.max_in_flight and profile.model_id not in caps:
            caps[profile.model_id] = profile.max_in_flight
    return caps


def in_flight_places(spec: ExperimentSpec, profiles: Profiles) -> dict[str, asyncio.Semaphore]:
    """The caps of :func:`in_flight_caps` as one semaphore per model."""
    return {model: asyncio.Semaphore(cap) for model, cap in in_flight_caps(spec, profiles).items()}


def limiters(spec: ExperimentSpec) -> tuple[dict[str, AsyncLimiter], dict[str, AsyncLimiter]]:
    requests = {
        m: AsyncLimiter(r.requests_per_minute, 60) for m, r in spec.rate_limits.items() if r.requests_per_minute
    }
    tokens = {m: AsyncLimiter(r.tokens_per_minute, 60) for m, r in spec.rate_limits.items() if r.tokens_per_minute}
    return requests, tokens


class ExecutorError(RuntimeError):
    """A run the chosen executor cannot carry (Ray not installed, a cassette or the embedded model on a
    cluster ...): one line saying what to change, before anything is written."""


EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class CallCounts:
    """A run's model-call counters, summed over wherever its calls were made."""

    calls_made: int = 0
    retries: int = 0
    cache_hits: int = 0

    def __add__(self, other: CallCounts) -> CallCounts:
        """Counts from two places (a worker's results, another's) as one."""
        return CallCounts(
            self.calls_made + other.calls_made, self.retries + other.retries, self.cache_hits + other.cache_hits
        )


class Episodes(Protocol):
    """Where a run's episodes are played: this process (:class:`LocalEpisodes`) or a Ray cluster
    (``sandbox.ray_executor``). Either way through :func:`sandbox.episode.play_episode`; only the
    dispatch and the place the limits live differ."""

    context: CallContext | None  # the calls' context in this process (None: calls are made elsewhere)
    label: str  # for the run log: where the episodes go

    async def play(self, episode: EpisodeSpec) -> EpisodeResult: ...

    async def counts(self) -> CallCounts: ...


@dataclass
class LocalEpisodes:
    """Episodes played in this process, on its event loop, within this process's limits."""

    run_id: str
    catalog: Catalog
    profiles: Profiles
    rubric: Rubric | None
    judges: list[ModelSettings]
    context: CallContext
    label: str = "local"

    async def play(self, episode: EpisodeSpec) -> EpisodeResult:
        return await play_episode(self.run_id, episode, self.catalog, self.profiles, self.rubric, self.judges)

    async def counts(self) -> CallCounts:
        return CallCounts(self.context.calls_made, self.context.retries, self.context.cache_hits)


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
    profiles: Profiles,
    options: RunOptions,
    episodes: Episodes | None = None,
) -> RunSummary:
    """Execute a plan: episodes through the one episode pipeline, each result appended as it ends.
    ``episodes`` is where they are played: this process (the default) or a Ray cluster; either way
    this driver alone writes the results, in the order they come back."""
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
    if episodes is None:
        request_limits, token_limits = limiters(spec)
        context = CallContext(
            cache=options.cache,
            request_limits=request_limits,
            token_limits=token_limits,
            in_flight=in_flight_places(spec, profiles),
        )
        episodes = LocalEpisodes(run_id, catalog, profiles, rubric, spec.models.judge, context)
    token = CALL_CONTEXT.set(episodes.context)
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
            result = await episodes.play(episode)
            await store.append_async(result)
            _log_episode(result)
            results[result.episode_id] = Tally.of(result)
            spent["cost"] += result.cost_usd
            if options.on_result:
                options.on_result(result)

    with run_log(store.folder):
        log.info(
            "run %s: %d planned, %d to run, %d finished before; concurrency %d; executor %s",
            run_id, len(plan.planned), len(plan.todo), len(plan.finished), spec.concurrency, episodes.label,
        )  # fmt: skip
        try:
            await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, max(1, len(plan.todo))))))
            counts = await episodes.counts()
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
            calls_made=counts.calls_made,
            retries=counts.retries,
            cache_hits=counts.cache_hits,
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


# --------------------------------------------------------------------------- the one entry point


OnPlan = Callable[["RunStart"], None]


@dataclass(frozen=True)
class RunStart:
    """What a run is about to do, for whoever shows it (the CLI prints it before the progress bar)."""

    run_id: str
    folder: Path
    plan: Plan
    concurrency: int
    embedded: bool


@dataclass(frozen=True)
class RunOutcome:
    summary: RunSummary
    plan: Plan
    folder: Path
    table: Path
    report_md: Path | None  # None when the caller asked for no report (tests, benchmarks)
    report_html: Path | None


def embedded_slots(spec: ExperimentSpec) -> int:
    """The embedded server's parallel slots: as many as the run has episodes in flight, within reason."""
    return max(2, min(spec.concurrency, 8))


def run_models(spec: ExperimentSpec, plan: Plan) -> list[ModelSettings]:
    """The settings the episodes to run carry (a spec's temperature makes copies), each once; none
    when nothing is left to run, so no model is loaded."""
    if not plan.todo:
        return []
    return list(dict.fromkeys([m for e in plan.todo for m in (e.rep_model, e.prospect_model)] + spec.models.judge))


@contextlib.contextmanager
def _dispatch(
    executor: str,
    address: str | None,
    spec: ExperimentSpec,
    catalog: Catalog,
    rubric: Rubric | None,
    run_id: str,
    models: list[ModelSettings],
    profiles: Profiles,
    cache_dir: Path | None,
) -> Iterator[Episodes | None]:
    """Where the episodes go: None for this process (run_experiment's own pool), or a Ray cluster's
    actors, started here and stopped when the run ends."""
    if executor == "local":
        yield None
        return
    from sandbox.ray_executor import ray_episodes

    with ray_episodes(spec, catalog, rubric, run_id, models, profiles, cache_dir, address) as episodes:
        yield episodes


def run(
    spec: ExperimentSpec,
    catalog: Catalog,
    rubric: Rubric | None = None,
    *,
    spec_path: str | None = None,
    runs_dir: Path = Path("runs"),
    folder: Path | None = None,
    resume: Path | None = None,
    retry_failed: bool = False,
    max_cost_usd: float | None = None,
    cache_dir: Path | None = None,
    cassette: Path | None = None,
    record: bool = False,
    on_plan: OnPlan | None = None,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    report: bool = True,
    preflight: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> RunOutcome:
    """A whole run, from lock to report: the CLI, the tests and the benchmarks all come through here.
    A new run goes to ``folder`` (default: a fresh id under ``runs_dir``); ``resume`` continues one.

    Raises :class:`RunLockedError` (another process holds the folder), :class:`SpecMismatchError`
    (a resumed folder from another spec), :class:`sandbox.local_server.LocalModelError` and
    ``FileNotFoundError`` (a cassette to replay that is missing), each a one-line message, and
    :class:`sandbox.preflight.PreflightError` (an endpoint failed its check; one line per endpoint).

    ``preflight``: check each endpoint the run needs once before anything is written, so a run that
    cannot work stops before its first episode and leaves no run folder behind.

    ``executor``: ``local`` plays the episodes on this process's event loop; ``ray`` as tasks of async
    actors on a Ray cluster (``address``; none starts a local one), this process still the one writer.
    One it cannot carry raises :class:`ExecutorError` (one line) before anything is written.
    """
    from sandbox.runtime import model_runtime

    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        from sandbox.ray_executor import check_runnable

        check_runnable(spec.all_models(), address=address, cassette=cassette, cache_dir=cache_dir)

    if resume is not None:
        try:
            RunFolder(resume).require()  # before the store creates anything in a mistyped folder
        except NotARunFolderError as exc:
            raise SpecMismatchError(str(exc)) from None
    folder = resume or folder or runs_dir / new_run_id(spec.id)
    if resume is None and RunFolder(folder).is_run():
        raise SpecMismatchError(f"{folder}: already holds a run; continue it with --resume, or start a new one")
    from sandbox.preflight import replaying, require_ready

    if preflight and not replaying(cassette, record):  # before the store creates the folder; planned
        ahead = plan_run(spec, folder, retry_failed)  # again below, under its lock
        if ahead.todo:  # a finished run re-opened (to report again) calls no model: nothing to check
            require_ready(run_models(spec, ahead))
    cache = None
    if cache_dir is not None and cassette is None and executor == "local":  # Ray's workers open their own
        from sandbox.cache import ResponseCache

        cache = ResponseCache(cache_dir)
    try:
        with RunStore(folder) as store:
            run_id = check_resumable(store, spec) if resume is not None else folder.name
            plan = plan_run(spec, folder, retry_failed)
            if resume is None:
                store.write_manifest(manifest_for(spec, run_id, spec_path, len(plan.planned)))
            models = run_models(spec, plan)
            if on_plan is not None:
                from sandbox.profiles import needs_embedded_server

                embedded = needs_embedded_server(models)
                on_plan(RunStart(run_id, folder, plan, spec.concurrency, embedded))
            options = RunOptions(
                max_cost_usd=max_cost_usd,
                cache=cache,
                on_start=on_start,
                on_result=on_result,
            )
            dispatch = executor if plan.todo else "local"  # nothing to play: no cluster to start
            with (
                model_runtime(models, cassette, record, slots=embedded_slots(spec)) as profiles,
                _dispatch(dispatch, address, spec, catalog, rubric, run_id, models, profiles, cache_dir) as episodes,
            ):
                summary = asyncio.run(
                    run_experiment(spec, catalog, rubric, store, run_id, plan, profiles, options, episodes)
                )
            from sandbox.report import write_report  # scipy, pandas, matplotlib: not before the first request
            from sandbox.table import export

            table = export(folder)
            report_md, report_html = write_report(folder) if report else (None, None)
    finally:
        if cache is not None:
            cache.close()
    return RunOutcome(
        summary=summary, plan=plan, folder=folder, table=table, report_md=report_md, report_html=report_html
    )
