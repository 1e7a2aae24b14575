"""One episode, whole: negotiate, measure, judge. The one pipeline that `sandbox negotiate` and the
runner share, so a dialogue a trainer asks for and an experiment's episode are made the same way.
Its second half, :func:`finish_episode`, is also how a practice session (whose dialogue a person
played through the engine) becomes an episode result: measured, judged and totalled the same way."""

from __future__ import annotations

import time

from sandbox.catalog import Catalog
from sandbox.engine import OnTurn, run_episode
from sandbox.judge import case_from_transcript, judge_panel
from sandbox.metrics import outcome_metrics
from sandbox.profiles import Profile, Profiles
from sandbox.results import EpisodeResult
from sandbox.schemas import EpisodeSpec, ModelSettings, OutcomeStatus, Rubric, Transcript


async def play_episode(
    run_id: str,
    episode: EpisodeSpec,
    catalog: Catalog,
    profiles: Profiles,
    rubric: Rubric | None = None,
    judges: list[ModelSettings] | None = None,
    on_turn: OnTurn | None = None,
) -> EpisodeResult:
    """A failure of any kind (a model, a bug, bad input) is recorded in the result, never raised:
    one episode must not take a run down."""
    started = time.perf_counter()
    try:
        rep, prospect = profiles[episode.rep_model], profiles[episode.prospect_model]
        judge_profiles: list[Profile] = [profiles[j] for j in judges or []]
        transcript = await run_episode(episode, catalog, rep, prospect, on_turn=on_turn)
    except Exception as exc:
        return EpisodeResult(
            run_id=run_id,
            episode_id=episode.episode_id,
            spec=episode,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            wall_time_s=round(time.perf_counter() - started, 3),
        )
    return await finish_episode(run_id, episode, transcript, rubric, judge_profiles, started)


async def finish_episode(
    run_id: str,
    spec: EpisodeSpec,
    transcript: Transcript,
    rubric: Rubric | None,
    judges: list[Profile],
    started: float | None = None,
) -> EpisodeResult:
    """A played dialogue measured, judged (unless it failed, or there is no rubric or judge) and totalled
    (cost, tokens and calls of the turns and the judges). ``started`` is the ``time.perf_counter()`` the
    episode's wall time counts from (default: now). A bug in measuring or judging keeps the dialogue and
    fails the episode with the reason, never raised."""
    started = time.perf_counter() if started is None else started
    failed = transcript.outcome.status is OutcomeStatus.FAILED
    error = transcript.outcome.reason if failed else None
    judgements = []
    metrics = None
    try:
        metrics = outcome_metrics(transcript)
        if not failed and rubric is not None and judges and transcript.turns:
            panel = await judge_panel(case_from_transcript(transcript), rubric, judges, seed=spec.seed)
            judgements = panel.judgements
    except Exception as exc:  # a bug in measuring or judging: the dialogue is kept, the episode failed
        failed, error = True, f"after the negotiation: {type(exc).__name__}: {exc}"
    calls = transcript.calls + [c for j in judgements for c in j.calls]
    return EpisodeResult(
        run_id=run_id,
        episode_id=spec.episode_id,
        spec=spec,
        status="failed" if failed else "ok",
        error=error,
        transcript=transcript,
        metrics=metrics,
        judgements=judgements,
        cost_usd=sum(c.cost_usd or 0.0 for c in calls),
        tokens=sum(c.tokens_in + c.tokens_out for c in calls if not c.cached),
        model_calls=sum(1 for c in calls if not c.cached),
        cached_calls=sum(1 for c in calls if c.cached),
        wall_time_s=round(time.perf_counter() - started, 3),
    )
