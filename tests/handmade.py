"""Run folders written by hand: EpisodeResult lines built from the shipped personas, no runner, no model.

Tests of the readers (table, report, examples) use these, so they depend on the run folder's
format only, not on how the runner gets there.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sandbox.catalog import Catalog, load_catalog
from sandbox.metrics import outcome_metrics
from sandbox.results import EpisodeResult
from sandbox.schemas import (
    Action,
    ActionKind,
    Cast,
    CriterionScore,
    EpisodeSpec,
    Evidence,
    Judgement,
    ModelSettings,
    Outcome,
    OutcomeStatus,
    Transcript,
    Turn,
    brief_for,
)
from sandbox.store import RunStore
from tests.conftest import ROOT

OPENING = "Hello Sam, what would make this worth your while?"
ACCEPT = "Fine, we accept."


@functools.cache
def shipped() -> Catalog:
    return load_catalog(ROOT / "personas")


def episode(
    strategy: str,
    seed: int = 1,
    *,
    prospect: str = "price-haggler",
    scenario: str = "saas-seats",
    status: str = "deal",
    error: str | None = None,
    scores: dict[str, int | None] | None = None,
    judge_errors: dict[str, str] | None = None,
    judge_model: str = "openai/judge",
    run_id: str = "handmade",
) -> EpisodeResult:
    """One episode: the rep opens, the prospect accepts (``status="deal"``), walks away, or the episode
    fails after the opening (``status="failed"``, with the metrics the runner computes from that partial
    transcript). ``scores`` per criterion (None: the judge gave none, for the reason in ``judge_errors``)."""
    catalog = shipped()
    spec = EpisodeSpec(
        strategy=strategy,
        prospect=prospect,
        scenario=scenario,
        seed=seed,
        rep_model=ModelSettings(model="openai/rep"),
        prospect_model=ModelSettings(model="openai/prospect"),
    )
    chosen = catalog.scenario(scenario)
    cast = Cast(
        strategy=catalog.strategy(strategy),
        prospect=catalog.prospect(prospect),
        scenario=chosen,
        brief=brief_for(catalog.prospect(prospect), chosen),
    )
    turns = [Turn(index=0, speaker="rep", message=OPENING, action=Action())]
    if status == "deal":
        turns.append(Turn(index=1, speaker="prospect", message=ACCEPT, action=Action(kind=ActionKind.ACCEPT)))
        outcome = Outcome(status=OutcomeStatus.DEAL, price=chosen.list_price, decided_by="prospect")
    elif status == "walk_away":
        turns.append(Turn(index=1, speaker="prospect", message="No.", action=Action(kind=ActionKind.WALK_AWAY)))
        outcome = Outcome(status=OutcomeStatus.WALK_AWAY, decided_by="prospect")
    else:
        outcome = Outcome(status=OutcomeStatus.FAILED, reason=error)
    transcript = Transcript(episode_id=spec.episode_id, spec=spec, cast=cast, turns=turns, outcome=outcome)
    judgements = []
    if scores is not None:
        criteria = [
            CriterionScore(
                criterion=criterion,
                score=score,
                rationale="by hand",
                evidence=[Evidence(turn=0, quote=OPENING, verified=True)] if score is not None else [],
                supported=score is not None,
                error=(judge_errors or {}).get(criterion) if score is None else None,
            )
            for criterion, score in scores.items()
        ]
        judgements.append(
            Judgement(episode_id=spec.episode_id, judge_model=judge_model, rubric_id="hand", scores=criteria)
        )
    failed = status == "failed"
    return EpisodeResult(
        run_id=run_id,
        episode_id=spec.episode_id,
        spec=spec,
        status="failed" if failed else "ok",
        error=error if failed else None,
        transcript=transcript,
        metrics=outcome_metrics(transcript),
        judgements=judgements,
        cost_usd=0.001,
    )


def write_run(folder: Path, results: list[EpisodeResult], baseline: str | None = None) -> Path:
    """A run folder as the runner leaves it: the manifest, then one line per result in the order given."""
    with RunStore(folder) as store:
        spec = {"id": "handmade", "baseline": baseline}
        store.write_manifest({"run_id": folder.name, "spec": spec, "planned_episodes": len(results)})
        for result in results:
            store.append(result)
    return folder
