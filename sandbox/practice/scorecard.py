"""The scorecard: the judge's verdicts on the person's side, read as a trainer would read them.

Pure: a transcript, its judges' verdicts and the rubric in, a :class:`Scorecard` out. What counts:

- Only criteria about the person's side (or both sides) count; the rest are listed as not about them.
  The rubric is written mostly about the rep, so a person playing the prospect is scored on the
  prospect's own commitment and the relationship's health only, and the card says so.
- Only verified scores count: a score whose every evidence quote failed the check (not in the turn
  it cites, or from the other side's turn) is shown as unsupported and left out of the mean; a
  criterion the judge could not score shows its reason. With no verified score there is no verdict.
- Pass means the mean of the counted scores reaches the pass mark *and* the person kept to their
  brief: a demanding trainer fails a rep who sells below the floor or says it, and a buyer who pays
  above the walk-away or says the budget, however well the talk went (the faithfulness findings of
  :mod:`sandbox.metrics`, the person's side only).
- Each criterion says what went well (its rationale, at a score of 3 or more) and what to try (the
  rubric's next anchored level above the score, with the judge's reason below 3), each pointing at
  the turn of its first verified quote.
- The lowest-scored moment is the person's turn behind the lowest counted score; the session adds
  what the hint strategy would have said there.
"""

from __future__ import annotations

import statistics
from typing import Literal

from pydantic import BaseModel, Field

from sandbox.metrics import faithfulness_records
from sandbox.schemas import Action, Criterion, CriterionScore, Judgement, Rubric, Speaker, Transcript

Verdict = Literal["pass", "fail", "unscored"]


class Pointer(BaseModel):
    """A piece of feedback and the turn it is about (None when the judge quoted nothing verified)."""

    text: str
    turn: int | None = None
    quote: str | None = None


class CriterionFeedback(BaseModel):
    criterion: str
    name: str
    about: Literal["rep", "prospect", "both"]
    counts: bool = Field(description="About the person's side and verified: part of the mean.")
    score: float | None = None
    note: str | None = Field(None, description="Why it does not count, when it does not.")
    went_well: Pointer | None = None
    to_try: Pointer | None = None


class Moment(BaseModel):
    """The person's turn behind the lowest counted score, and what the hint strategy would have said."""

    turn: int
    criterion: str
    score: float
    said: str
    suggestion_source: str | None = None
    suggestion: str | None = None
    suggestion_action: Action | None = None
    error: str | None = None


class Scorecard(BaseModel):
    side: Speaker
    pass_mark: float
    verdict: Verdict
    mean: float | None
    counted: int
    outcome: str
    brief_kept: bool
    brief_findings: list[str] = Field(default_factory=list)
    scope: str = Field(description="What is scored for this side, in a sentence.")
    criteria: list[CriterionFeedback]
    lowest: Moment | None = None
    no_moment: str | None = None
    judges: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def applies(criterion: Criterion, side: Speaker) -> bool:
    return criterion.about in (side, "both")


def scope_line(rubric: Rubric, side: Speaker) -> str:
    counted = [c.name for c in rubric.criteria if applies(c, side)]
    left = len(rubric.criteria) - len(counted)
    if side == "rep":
        return (
            f"you played the rep: {len(counted)} of {len(rubric.criteria)} criteria are about you "
            f"({left} about the prospect: not counted), and keeping to your brief"
        )
    return (
        f"you played the prospect: the rubric is written about the rep, so {left} of its {len(rubric.criteria)} "
        f"criteria are not counted; counted: {', '.join(counted)}, and keeping to your brief"
    )


def _next_anchor(criterion: Criterion, score: float) -> str | None:
    higher = [level for level in criterion.levels if level > score]
    return f"level {min(higher)}: {criterion.levels[min(higher)]}" if higher else None


def _first_verified(
    scores: list[CriterionScore], transcript: Transcript, side: Speaker | None
) -> tuple[int, str] | None:
    speakers = {t.index: t.speaker for t in transcript.turns}
    for score in scores:
        for evidence in score.evidence:
            if evidence.verified and (side is None or speakers.get(evidence.turn) == side):
                return evidence.turn, evidence.quote
    return None


def feedback(
    criterion: Criterion, scores: list[CriterionScore], transcript: Transcript, side: Speaker
) -> CriterionFeedback:
    """One criterion over every judge's verdict on it (see the module docstring)."""
    base = CriterionFeedback(criterion=criterion.id, name=criterion.name, about=criterion.about, counts=False)
    scored = [s for s in scores if s.score is not None]
    verified = [s for s in scored if s.supported]
    if not applies(criterion, side):
        shown = statistics.fmean(s.score for s in (verified or scored)) if scored else None  # type: ignore[misc]
        unsupported = "" if verified or not scored else " (and unsupported)"
        return base.model_copy(
            update={"score": shown, "note": f"about the {criterion.about}: not counted for you{unsupported}"}
        )
    if not scored:
        reasons = "; ".join(sorted({s.error for s in scores if s.error})) or "no verdict"
        return base.model_copy(update={"note": f"not scored: {reasons}"})
    if not verified:
        mean = statistics.fmean(s.score for s in scored)  # type: ignore[misc]
        return base.model_copy(
            update={"score": mean, "note": "unsupported: no evidence quote was found in the dialogue; not counted"}
        )
    score = statistics.fmean(s.score for s in verified)  # type: ignore[misc]
    where = _first_verified(verified, transcript, side) or _first_verified(verified, transcript, None)
    turn, quote = where if where is not None else (None, None)
    rationale = next((s.rationale for s in verified if s.rationale), "")
    anchor = _next_anchor(criterion, score)
    went_well = Pointer(text=rationale, turn=turn, quote=quote) if score >= 3 and rationale else None
    to_try = None
    if anchor is not None:
        text = f"aim for {anchor}" if score >= 3 or not rationale else f"{rationale} Aim for {anchor}"
        to_try = Pointer(text=text, turn=turn, quote=quote)
    return base.model_copy(update={"counts": True, "score": score, "went_well": went_well, "to_try": to_try})


def lowest_moment(
    items: list[CriterionFeedback], judgements: list[Judgement], transcript: Transcript, side: Speaker
) -> Moment | None:
    """The person's turn behind the lowest counted score (ties: the rubric's order)."""
    by_criterion: dict[str, list[CriterionScore]] = {}
    for judgement in judgements:
        for score in judgement.scores:
            if score.supported:
                by_criterion.setdefault(score.criterion, []).append(score)
    ranked = sorted((item for item in items if item.counts), key=lambda item: item.score)  # type: ignore[arg-type, return-value]
    turns = {t.index: t for t in transcript.turns}
    for item in ranked:
        where = _first_verified(by_criterion.get(item.criterion, []), transcript, side)
        if where is not None:
            turn = where[0]
            return Moment(turn=turn, criterion=item.criterion, score=item.score or 0.0, said=turns[turn].message)
    return None


def build_scorecard(
    transcript: Transcript,
    judgements: list[Judgement],
    rubric: Rubric,
    side: Speaker,
    pass_mark: float,
    outcome: str,
) -> Scorecard:
    findings = [f.line for f in faithfulness_records(transcript) if f.side == side]
    items = [
        feedback(c, [s for j in judgements for s in j.scores if s.criterion == c.id], transcript, side)
        for c in rubric.criteria
    ]
    counted = [item.score for item in items if item.counts and item.score is not None]
    mean = statistics.fmean(counted) if counted else None
    if mean is None:
        verdict: Verdict = "unscored"
    else:
        verdict = "pass" if mean >= pass_mark and not findings else "fail"
    moment = lowest_moment(items, judgements, transcript, side) if judgements else None
    warnings = []
    for judgement in judgements:
        if judgement.self_preference:
            roles = " and ".join(judgement.self_preference)
            warnings.append(f"the judge {judgement.judge_model} also played the {roles}: self-preference risk")
    return Scorecard(
        side=side,
        pass_mark=pass_mark,
        verdict=verdict,
        mean=mean,
        counted=len(counted),
        outcome=outcome,
        brief_kept=not findings,
        brief_findings=findings,
        scope=scope_line(rubric, side),
        criteria=items,
        lowest=moment,
        no_moment=None if moment is not None or verdict == "unscored" else "no counted score quotes one of your turns",
        judges=[j.judge_model for j in judgements],
        warnings=warnings,
    )
