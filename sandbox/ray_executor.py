"""Episodes on a Ray cluster, for runs one driver process cannot carry.

The episodes are tasks of async actors (:class:`EpisodeWorker`, one per CPU of the cluster), each
playing them through the one pipeline, :func:`sandbox.episode.play_episode`, with the same profiles
and seeds as on a laptop; their results stream back to the driver, which alone writes the run folder,
so resume, the file lock and the exactly-once guarantee are the local executor's own. Rate limits and
caps on requests at once live in one async actor (:class:`Limiter`) that every worker asks before a
request, so they hold across the cluster; it waits without blocking (aiolimiter, semaphores).

Ray is the optional extra ``ray``: nothing in the core imports it, and this module imports it only
when a run asks for it (:func:`ray_module`), with a one-line hint when it is missing.

What a worker cannot share with the driver is refused before anything is written
(:func:`check_runnable`): a cassette (vcrpy patches the driver's process only), and on a cluster
``--address`` the embedded model (it listens on the driver's loopback) and the response cache (a
folder on the driver's disk). On a Ray started here, on this machine, both work: the workers get the
embedded server's address and open the same cache folder (diskcache is safe across processes).

Keys: each worker resolves its profiles from its own environment, as the laptop does; the driver never
ships a key through Ray. Log records made in a worker (retries and their reasons) come back with each
result, already redacted, and go to the driver's ``run.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.catalog import Catalog
from sandbox.experiment import ExperimentSpec
from sandbox.models import CALL_CONTEXT, CallContext
from sandbox.profiles import Profiles, needs_embedded_server
from sandbox.results import EpisodeResult
from sandbox.runner import CallCounts, ExecutorError, in_flight_caps, limiters
from sandbox.schemas import EpisodeSpec, ModelSettings, Rubric

INSTALL_HINT = 'the Ray executor needs Ray, an optional extra: pip install -e ".[ray]"'
LOCAL_ADDRESSES = (None, "local")  # ray.init starts a Ray of its own on this machine
READY_TIMEOUT_S = 300.0  # a worker imports the package once; a cluster may also have to find a free CPU
LIMITER_CONCURRENCY = 100_000  # waiters at once in the limiter: every request in flight across the cluster


def ray_module() -> Any:
    """Ray, or :class:`ExecutorError` saying what to install."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(INSTALL_HINT) from None
    return ray


def on_cluster(address: str | None) -> bool:
    """Whether ``address`` names a cluster whose workers may run on other machines than this one."""
    return address not in LOCAL_ADDRESSES


def check_runnable(
    models: Iterable[ModelSettings], *, address: str | None, cassette: Path | None, cache_dir: Path | None
) -> None:
    """What the Ray executor cannot carry, as one :class:`ExecutorError` line saying what to change."""
    ray_module()
    if cassette is not None:
        raise ExecutorError(
            "--cassette works with --executor local only: vcrpy records and replays inside this process, "
            "and Ray's workers would send real requests"
        )
    if not on_cluster(address):
        return
    if needs_embedded_server(models):
        raise ExecutorError(
            f"the embedded model ('local') listens on this machine's loopback, which Ray workers on other "
            f"nodes cannot reach: give each role a server's api_base (vLLM, llama-server), or drop --address "
            f"{address} to start Ray on this machine"
        )
    if cache_dir is not None:
        raise ExecutorError(
            f"the response cache is a folder on this machine ({cache_dir}), which Ray workers on other nodes "
            f"cannot share: add --no-cache, or drop --address {address} to start Ray on this machine"
        )


# --------------------------------------------------------------------------- the one limiter


class Limiter:
    """The run's rate limits (aiolimiter) and caps on requests at once (semaphores), per model id, in
    one async actor: every worker of the cluster asks it before each request, so a limit is the
    cluster's, not each worker's. It only ever awaits; nothing in it blocks its event loop."""

    def __init__(self, spec: ExperimentSpec, caps: dict[str, int]):
        requests, tokens = limiters(spec)
        self.context = CallContext(request_limits=requests, token_limits=tokens)
        self.caps = caps
        self.places: dict[str, asyncio.Semaphore] = {}  # made on the actor's own loop, at first use
        self.held: dict[int, Counter[str]] = {}  # worker -> places it holds now, per model
        self.forgotten: set[int] = set()  # lost workers: a place one of them still queued for goes back

    async def ready(self) -> int:
        return os.getpid()

    async def acquire(self, model_id: str, tokens: int, holder: int) -> bool:
        """Wait for the rate limits, then for a place; whether a place was taken (release it after)."""
        await self.context.respect_limits(model_id, tokens)
        cap = self.caps.get(model_id)
        if cap is None:
            return False
        place = self.places.get(model_id)
        if place is None:
            place = self.places[model_id] = asyncio.Semaphore(cap)
        await place.acquire()
        if holder in self.forgotten:  # its worker was lost while this waited: nobody would release it
            place.release()
            return False
        self.held.setdefault(holder, Counter())[model_id] += 1
        return True

    async def release(self, model_id: str, holder: int) -> None:
        held = self.held.get(holder)
        if held and held[model_id] > 0:
            held[model_id] -= 1
            self.places[model_id].release()

    async def forget(self, holder: int) -> int:
        """A lost worker's places given back (it will never release them), and those it still waits
        for given back as soon as they are taken; how many it held."""
        self.forgotten.add(holder)
        held = self.held.pop(holder, Counter())
        for model_id, count in held.items():
            for _ in range(count):
                self.places[model_id].release()
        return held.total()


@dataclass
class ClusterCallContext(CallContext):
    """A worker's call context: its own cache and counters, the cluster's one :class:`Limiter`, asked
    only for the models that have a limit (the others' requests cost no round trip)."""

    limiter: Any = None  # the Limiter actor's handle
    limited: frozenset[str] = frozenset()
    holder: int = 0  # this worker's number, which the limiter keeps its places under

    @contextlib.asynccontextmanager
    async def within_limits(self, model_id: str, tokens: int) -> AsyncIterator[None]:
        if self.limiter is None or model_id not in self.limited:
            yield
            return
        placed = await self.limiter.acquire.remote(model_id, tokens, self.holder)
        try:
            yield
        finally:
            if placed:
                self.limiter.release.remote(model_id, self.holder)  # nothing to wait for


# --------------------------------------------------------------------------- the workers


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs to play any episode of the run: no key, no open file."""

    run_id: str
    catalog: Catalog
    rubric: Rubric | None
    judges: list[ModelSettings]
    models: list[ModelSettings]
    embedded_api_base: str | None
    embedded_slots: int
    cache_dir: str | None
    limiter: Any
    limited: frozenset[str]
    log_level: int


class _Collect(logging.Handler):
    """A worker's log records, redacted and made plain (message and traceback in one string, by the run
    log's own formatter), until the next result takes them to the driver."""

    def __init__(self, level: int):
        super().__init__(level)
        from sandbox.runlog import RedactingFormatter

        self.setFormatter(RedactingFormatter("%(message)s"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.message = self.format(record)  # `message`, which format sets, unredacted no more
        record.args, record.exc_info, record.exc_text, record.stack_info = None, None, None, None
        self.records.append(record)

    def drain(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records


class EpisodeWorker:
    """One async actor: plays episodes through :func:`sandbox.episode.play_episode`, as many at once as
    the driver sends it, on its own event loop; its profiles come from its own environment."""

    def __init__(self, job: WorkerJob, number: int):
        import gc

        import sandbox.models.call  # noqa: F401 - imported once here, not inside the first episode
        from sandbox.runlog import PROVIDER_LOGGERS, log

        self.job = job
        self.profiles = Profiles(job.models, embedded_api_base=job.embedded_api_base, embedded_slots=job.embedded_slots)
        cache = None
        if job.cache_dir is not None:
            from sandbox.cache import ResponseCache

            cache = ResponseCache(job.cache_dir)
        self.context = ClusterCallContext(cache=cache, limiter=job.limiter, limited=job.limited, holder=number)
        self.reported = (0, 0, 0)  # the calls made, retries and cache hits the driver has been sent so far
        self.logs = _Collect(job.log_level)
        log.setLevel(job.log_level)
        for logger in [log, *(logging.getLogger(name) for name in PROVIDER_LOGGERS)]:
            logger.addHandler(self.logs)
        gc.freeze()  # as the driver does: no full collection walks the imported libraries mid-run

    async def ready(self) -> int:
        return os.getpid()

    async def play(self, episode: EpisodeSpec) -> tuple[EpisodeResult, list[logging.LogRecord], CallCounts]:
        """The episode's result, with the records logged and the calls counted since the last result (so
        the driver has a worker's counts even if the worker is lost later)."""
        from sandbox.episode import play_episode

        CALL_CONTEXT.set(self.context)  # each call is a task of its own: its context is its own copy
        job = self.job
        result = await play_episode(job.run_id, episode, job.catalog, self.profiles, job.rubric, job.judges)
        return result, self.logs.drain(), await self.counts()

    async def counts(self) -> CallCounts:
        """What this worker counted since it last said: each count reaches the driver once, in any order."""
        c = self.context
        now = (c.calls_made, c.retries, c.cache_hits)
        last, self.reported = self.reported, now
        return CallCounts(*(n - m for n, m in zip(now, last, strict=True)))


# --------------------------------------------------------------------------- the driver's side


@dataclass
class RayEpisodes:
    """The driver's view of the workers: each episode goes to the live one with the fewest in flight, and
    its result comes back to the driver's event loop. A worker that dies is left out from then on (its
    places in the limiter given back) and its episodes are played again by the others: nothing of theirs
    was written, so each is still written once. An episode is played again once only: one whose second
    worker dies too (it may be what kills them: out of memory, a crash) fails with the reason, as it
    does when no worker is left. Each result brings its worker's counts since the last, so a lost
    worker's calls stay in the summary."""

    ray: Any
    run_id: str
    workers: list[Any]
    limiter: Any = None
    label: str = "ray"
    in_flight: list[int] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)
    counted: CallCounts = field(default_factory=CallCounts)  # the sum of what the workers' results said they counted
    context: CallContext | None = None  # no model call is made in the driver

    def __post_init__(self) -> None:
        self.in_flight = [0] * len(self.workers)

    async def play(self, episode: EpisodeSpec) -> EpisodeResult:
        replayed = False
        while True:
            live = [i for i in range(len(self.workers)) if i not in self.lost]
            if not live:
                return self._failed(episode, "RayActorError: every Ray worker of the run was lost")
            index = min(live, key=self.in_flight.__getitem__)
            self.in_flight[index] += 1
            try:
                result, records, counts = await self.workers[index].play.remote(episode)
            except self.ray.exceptions.RayActorError as exc:
                await self._lose(index, exc)
                if replayed:
                    return self._failed(episode, f"{_first_line(exc)} (its second Ray worker lost too: not replayed)")
                replayed = True
                continue
            except self.ray.exceptions.RayError as exc:
                return self._failed(episode, _first_line(exc))
            finally:
                self.in_flight[index] -= 1
            for record in records:
                logging.getLogger(record.name).handle(record)
            self.counted += counts
            return result

    async def _lose(self, index: int, exc: BaseException) -> None:
        if index in self.lost:
            return
        self.lost.add(index)
        given_back = await self.limiter.forget.remote(index) if self.limiter is not None else 0
        from sandbox.runlog import log

        log.warning(
            "Ray worker %d lost (%s); %d left play its episodes; %d limiter places given back",
            index, _first_line(exc), len(self.workers) - len(self.lost), given_back,
        )  # fmt: skip

    def _failed(self, episode: EpisodeSpec, error: str) -> EpisodeResult:
        return EpisodeResult(
            run_id=self.run_id, episode_id=episode.episode_id, spec=episode, status="failed", error=error
        )

    async def counts(self) -> CallCounts:
        """Every worker's counts: those its results brought, and what the live ones counted since."""
        live = [w for i, w in enumerate(self.workers) if i not in self.lost]
        counted = await asyncio.gather(*(w.counts.remote() for w in live), return_exceptions=True)
        for more in counted:
            if isinstance(more, CallCounts):
                self.counted += more
        return self.counted


def worker_name(run_id: str, number: int) -> str:
    """A worker's actor name (``ray list actors``, ``ray.get_actor``): the run, this driver, the number."""
    return f"sandbox-{run_id}-{os.getpid()}-worker-{number}"


def worker_count(ray: Any, concurrency: int) -> int:
    """One worker per CPU of the cluster (each is one event loop, busy on one core), never more than
    the episodes allowed at once."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(cpus, concurrency))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
    return f"{type(exc).__name__}: {cause}"[:300]


@contextlib.contextmanager
def ray_episodes(
    spec: ExperimentSpec,
    catalog: Catalog,
    rubric: Rubric | None,
    run_id: str,
    models: list[ModelSettings],
    profiles: Profiles,
    cache_dir: Path | None,
    address: str | None,
) -> Iterator[RayEpisodes]:
    """Ray (joined at ``address``, or started on this machine; one already running in this process is
    used as it is), the run's limiter and its workers, ready; all stopped when the run ends."""
    from sandbox.runlog import log_level

    ray = ray_module()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            # "local" always starts a Ray of its own; None would join RAY_ADDRESS's cluster or the last one
            # started on this machine, which check_runnable (seeing no address) took for a local Ray
            address=address if on_cluster(address) else "local",
            include_dashboard=False,
            log_to_driver=False,  # the workers' output stays in Ray's logs; their records come back with results
            logging_level=logging.WARNING,
        )
    actors: list[Any] = []
    try:
        caps = in_flight_caps(spec, profiles)
        rated = {m for m, r in spec.rate_limits.items() if r.requests_per_minute or r.tokens_per_minute}
        limited = frozenset(caps) | frozenset(rated)
        limiter = None
        if limited:
            limiter = ray.remote(Limiter).options(num_cpus=0, max_concurrency=LIMITER_CONCURRENCY).remote(spec, caps)
            actors.append(limiter)
        job = WorkerJob(
            run_id=run_id,
            catalog=catalog,
            rubric=rubric,
            judges=list(spec.models.judge),
            models=models,
            embedded_api_base=profiles.embedded_api_base,
            embedded_slots=profiles.embedded_slots,
            cache_dir=str(cache_dir.resolve()) if cache_dir is not None else None,
            limiter=limiter,
            limited=limited,
            log_level=log_level(),
        )
        worker = ray.remote(EpisodeWorker)
        workers = [
            worker.options(
                num_cpus=1, max_concurrency=max(1, spec.concurrency) + 1, name=worker_name(run_id, i)
            ).remote(job, i)
            for i in range(worker_count(ray, spec.concurrency))
        ]
        actors.extend(workers)
        try:
            ray.get([a.ready.remote() for a in actors], timeout=READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise ExecutorError(
                f"the Ray workers did not start within {READY_TIMEOUT_S:.0f} s: the cluster has no free CPU for "
                f"them, or they cannot install; see `ray status`"
            ) from None
        except ray.exceptions.RayError as exc:
            raise ExecutorError(
                f"a Ray worker could not start (is negotiation-sandbox installed on every node?): {_first_line(exc)}"
            ) from None
        where = "a cluster at " + str(address) if on_cluster(address) else "Ray on this machine"
        label = f"ray ({len(workers)} workers on {where}{', one limiter actor' if limiter else ''})"
        yield RayEpisodes(ray=ray, run_id=run_id, workers=workers, limiter=limiter, label=label)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started_here:
            ray.shutdown()


__all__ = [
    "INSTALL_HINT",
    "ClusterCallContext",
    "EpisodeWorker",
    "Limiter",
    "RayEpisodes",
    "worker_name",
    "check_runnable",
    "ray_episodes",
    "ray_module",
]
