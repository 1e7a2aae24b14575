"""The judge: scores a transcript against the rubric, one criterion per structured call.

It is built as a measuring instrument. It is blind (its input type, :class:`JudgeCase`, has no
field for the rep's strategy or either side's private information), it treats the transcript
as untrusted data between nonce-tagged markers, and every evidence quote is checked against
the turn it cites: a score whose evidence cannot be found is marked unsupported. A criterion
the model cannot score (junk twice, provider failure) is recorded with its reason, never scored.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import statistics
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, create_model

from sandbox.catalog import load_model
from sandbox.content import CONTENT_ROOT
from sandbox.models import ModelCallError, complete_structured
from sandbox.profiles import Profile
from sandbox.prompts import render
from sandbox.schemas import (
    AggregateScore,
    Criterion,
    CriterionScore,
    Evidence,
    Judgement,
    JudgePanel,
    OutcomeStatus,
    Rubric,
    ScenarioPublic,
    Speaker,
    Transcript,
)

DEFAULT_RUBRIC = CONTENT_ROOT / "judges" / "rubric.yaml"
MIN_QUOTE_WORDS = 2


def load_rubric(path: Path | str = DEFAULT_RUBRIC) -> Rubric:
    return load_model(Path(path), Rubric)


# --------------------------------------------------------------------------- what the judge sees


class JudgeTurn(BaseModel):
    index: int
    speaker: Speaker
    text: str


class JudgeCase(BaseModel):
    """Everything the judge may see. No strategy, no private fields: blindness by construction."""

    episode_id: str
    context: str
    turns: list[JudgeTurn]
    outcome: str
    agent_models: dict[Speaker, str] = Field(default_factory=dict)
    judged_from: int = Field(
        0,
        description="First turn this episode's agents played; the turns before it are a shared beginning "
        "(a branch's), shown for context, never quotable as evidence.",
    )


def describe_outcome(status: OutcomeStatus, price: float | None, decided_by: str | None, money) -> str:  # noqa: ANN001
    if status is OutcomeStatus.DEAL and price is not None:
        return f"deal at {money(price)}, accepted by the {decided_by}"
    if status is OutcomeStatus.WALK_AWAY:
        return f"no deal: the {decided_by} walked away"
    if status is OutcomeStatus.MAX_TURNS:
        return "no deal within the turn limit"
    return "the conversation was cut short"


def deal_context(scenario: ScenarioPublic) -> str:
    """The public facts of the deal: what the judge may know besides the dialogue."""
    price = f"{scenario.money(scenario.list_price)} {scenario.price_unit}"
    return f"{scenario.seller} sells {scenario.product} List price: {price}."


def case_from_transcript(transcript: Transcript) -> JudgeCase:
    scenario = transcript.cast.scenario.public()
    outcome = transcript.outcome
    return JudgeCase(
        episode_id=transcript.episode_id,
        context=deal_context(scenario),
        turns=[JudgeTurn(index=t.index, speaker=t.speaker, text=t.message) for t in transcript.turns],
        outcome=describe_outcome(outcome.status, outcome.price, outcome.decided_by, scenario.money),
        agent_models={"rep": transcript.spec.rep_model.model, "prospect": transcript.spec.prospect_model.model},
        judged_from=transcript.played_from,
    )


def nonce_for(case: JudgeCase) -> str:
    """Deterministic (so cassettes replay) but not guessable from inside the transcript text."""
    # A case of an unbranched episode hashes as it did before branches existed: recorded judge calls replay.
    digest = hashlib.sha256(case.model_dump_json(exclude={"judged_from"} if not case.judged_from else None).encode())
    digest = digest.hexdigest()
    return f"id={digest[:12]}"


_MARKER = re.compile(r"</?\s*transcript", re.IGNORECASE)


def _defang(text: str) -> str:
    """A speaker cannot close the data block early: marker look-alikes are neutralised."""
    return _MARKER.sub(lambda m: m.group(0).replace("<", "‹"), text)


def judge_messages(case: JudgeCase, criterion: Criterion) -> list[dict[str, str]]:
    nonce = nonce_for(case)
    about = {"rep": "the sales rep", "prospect": "the prospect", "both": "both speakers"}[criterion.about]
    turns = [
        {"index": t.index, "label": "REP" if t.speaker == "rep" else "PROSPECT", "text": _defang(t.text)}
        for t in case.turns
    ]
    return [
        {"role": "system", "content": render("judge_system.j2", nonce=nonce)},
        {
            "role": "user",
            "content": render(
                "judge_user.j2",
                nonce=nonce,
                context=_defang(case.context),
                turns=turns,
                outcome=case.outcome,
                criterion=criterion,
                about=about,
                judged_from=case.judged_from,
            ),
        },
    ]


# --------------------------------------------------------------------------- model output


class QuoteOut(BaseModel):
    turn: int = Field(ge=0)
    quote: str = Field(max_length=100)


class CriterionVerdict(BaseModel):
    """What the judge model returns for one criterion."""

    score: Literal[1, 2, 3, 4, 5]
    rationale: str = Field(max_length=160)
    evidence: list[QuoteOut] = Field(max_length=2)


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def quote_options(case: JudgeCase) -> list[str]:
    """Every sentence of every turn, as '[turn] sentence': the only quotes a constrained judge may give."""
    options: list[str] = []
    for turn in case.turns[case.judged_from :]:
        for sentence in _SENTENCE.findall(" ".join(turn.text.split())):
            sentence = sentence.strip()
            if len(sentence.split()) >= MIN_QUOTE_WORDS:
                option = f"[{turn.index}] {sentence[:200]}"
                if option not in options:
                    options.append(option)
    return options


def constrained_verdict_model(case: JudgeCase) -> type[BaseModel]:
    """A verdict schema whose evidence must be picked from the transcript's own sentences.

    Under a grammar (llama.cpp) or strict structured outputs this makes every quote verbatim by
    construction, which a tiny model cannot manage freely; the check below still runs.
    """
    options = quote_options(case)
    return _verdict_model_choosing_from(tuple(options)) if options else CriterionVerdict


@functools.lru_cache(maxsize=64)
def _verdict_model_choosing_from(options: tuple[str, ...]) -> type[BaseModel]:
    """One class per transcript, shared by its ten criteria (and so is its schema, built once)."""
    quote_type = Literal[options]  # type: ignore[valid-type]
    return create_model(
        "CriterionVerdictConstrained",
        score=(Literal[1, 2, 3, 4, 5], ...),
        rationale=(str, Field(max_length=160)),
        evidence=(list[quote_type], Field(max_length=2)),  # type: ignore[valid-type]
    )


_OPTION = re.compile(r"^\[(\d+)\] (.*)$", re.DOTALL)


def parse_quotes(evidence: list) -> list[QuoteOut]:  # noqa: ANN001
    quotes: list[QuoteOut] = []
    for item in evidence:
        if isinstance(item, QuoteOut):
            quotes.append(item)
            continue
        match = _OPTION.match(str(item))
        if match:
            quotes.append(QuoteOut(turn=int(match.group(1)), quote=match.group(2)[:100]))
    return quotes


def normalise(text: str) -> str:
    return " ".join(text.split())


def verify_quote(quote: str, turn_text: str) -> bool:
    """Exact or whitespace-normalised substring of the cited turn, at least two words long."""
    cleaned = normalise(quote.strip().strip("\"'“”‘’"))
    if len(cleaned.split()) < MIN_QUOTE_WORDS:
        return False
    return cleaned in normalise(turn_text)


def speakers_quotable(criterion: Criterion) -> set[Speaker]:
    """Whose turns may evidence a score: the side the criterion is about, unless it says either side."""
    if criterion.about == "both" or criterion.quote_either_side:
        return {"rep", "prospect"}
    return {criterion.about}


def check_evidence(case: JudgeCase, quotes: list[QuoteOut], criterion: Criterion | None = None) -> list[Evidence]:
    """Each quote must be in the turn it cites, and that turn must be spoken by a side the criterion
    lets it quote: a prospect's words cannot show that the rep asked good questions."""
    turns = {t.index: t for t in case.turns}
    allowed = speakers_quotable(criterion) if criterion is not None else {"rep", "prospect"}
    unique = list({(q.turn, normalise(q.quote)): q for q in quotes}.values())
    evidence = []
    for q in unique:
        turn = turns.get(q.turn)
        problem = None
        if turn is None:
            problem = f"turn {q.turn} does not exist"
        elif q.turn < case.judged_from:
            problem = f"turn {q.turn} is in the shared beginning (turns before {case.judged_from}), not this episode's"
        elif not verify_quote(q.quote, turn.text):
            problem = f"not found in turn {q.turn}"
        elif turn.speaker not in allowed:
            problem = f"quotes the {turn.speaker}; this criterion is about the {criterion.about}"  # type: ignore[union-attr]
        evidence.append(Evidence(turn=q.turn, quote=q.quote, verified=problem is None, problem=problem))
    return evidence


def self_preference(judge_model: str, agent_models: dict[Speaker, str]) -> list[Speaker]:
    return [role for role, model in agent_models.items() if model == judge_model]


# --------------------------------------------------------------------------- judging


async def judge_criterion(
    case: JudgeCase, criterion: Criterion, profile: Profile, seed: int
) -> tuple[CriterionScore, list]:
    constrained = profile.evidence_mode == "constrained"
    schema = constrained_verdict_model(case) if constrained else CriterionVerdict
    try:
        verdict, calls = await complete_structured(
            profile.endpoint,
            judge_messages(case, criterion),
            schema,
            purpose=f"judge:{criterion.id}",
            temperature=0.0,
            max_tokens=200,
            seed=seed,
            timeout_s=profile.timeout_s,
        )
    except ModelCallError as exc:
        return CriterionScore(criterion=criterion.id, error=exc.reason), exc.calls
    evidence = check_evidence(case, parse_quotes(verdict.evidence), criterion)
    return (
        CriterionScore(
            criterion=criterion.id,
            score=verdict.score,
            rationale=verdict.rationale.strip(),
            evidence=evidence,
            supported=any(e.verified for e in evidence),
        ),
        calls,
    )


async def judge(
    case: JudgeCase,
    rubric: Rubric,
    profile: Profile,
    seed: int = 1,
    concurrency: int | None = None,
) -> Judgement:
    """One judge model on one transcript, its criteria as many at once as its profile says."""
    gate = asyncio.Semaphore(concurrency or profile.judge_concurrency)

    async def one(criterion: Criterion) -> tuple[CriterionScore, list]:
        async with gate:
            return await judge_criterion(case, criterion, profile, seed)

    results = await asyncio.gather(*(one(c) for c in rubric.criteria))
    return Judgement(
        episode_id=case.episode_id,
        judge_model=profile.model_id,
        rubric_id=rubric.id,
        scores=[score for score, _ in results],
        calls=[call for _, calls in results for call in calls],
        self_preference=self_preference(profile.model_id, case.agent_models),
    )


def aggregate(judgements: list[Judgement]) -> dict[str, AggregateScore]:
    """Per criterion: mean and population spread over the judges that produced a score."""
    by_criterion: dict[str, list[int]] = {}
    for judgement in judgements:
        for criterion, score in judgement.scored.items():
            by_criterion.setdefault(criterion, []).append(score)
    return {
        criterion: AggregateScore(mean=statistics.fmean(scores), spread=statistics.pstdev(scores), n=len(scores))
        for criterion, scores in by_criterion.items()
    }


async def judge_panel(case: JudgeCase, rubric: Rubric, judges: list[Profile], seed: int = 1) -> JudgePanel:
    """Every judge of a run or a negotiation on one transcript: the one way a transcript is judged."""
    judgements = [await judge(case, rubric, profile, seed) for profile in judges]
    return JudgePanel(episode_id=case.episode_id, judgements=judgements, aggregate=aggregate(judgements))
