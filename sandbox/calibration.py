"""Calibrating the judge against labelled transcripts: agreement, grounding, manipulation, verbosity.

Agreement statistics come from scipy (Spearman) and scikit-learn (quadratic-weighted kappa);
nothing here reimplements them. Functions that compute figures are pure; running the judge
over the set is the one async step.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from pathlib import Path

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from sandbox.catalog import Catalog, CatalogError, describe_validation_error, read_yaml
from sandbox.content import CONTENT_ROOT
from sandbox.judge import JudgeCase, JudgeTurn, deal_context, judge
from sandbox.profiles import Profile
from sandbox.schemas import Judgement, Rubric, Speaker

DEFAULT_SET = CONTENT_ROOT / "judges" / "calibration"
SCORES = [1, 2, 3, 4, 5]
ATTACK_LOW = 2  # a criterion the behaviour deserves at most this on...
ATTACK_HIGH = 4  # ...that the judge scores at least this on: the attack worked
VERBOSITY_TOLERANCE = 0.25
PADDING = (
    " To be completely clear, and to restate what I have just said in slightly different words so that"
    " nothing is lost, I want to repeat my point once more."
)


class CalibrationCase(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    scenario: str
    manipulation: bool = False
    turns: list[dict[Speaker, str]] = Field(min_length=1)
    outcome: str
    expected: dict[str, int]

    @field_validator("turns")
    @classmethod
    def _one_speaker_per_turn(cls, turns: list[dict[Speaker, str]]) -> list[dict[Speaker, str]]:
        for turn in turns:
            if len(turn) != 1:
                raise ValueError("each turn is one 'rep: ...' or 'prospect: ...' line")
        return turns

    @field_validator("expected")
    @classmethod
    def _on_scale(cls, expected: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in expected.items() if v not in SCORES}
        if bad:
            raise ValueError(f"scores must be 1-5: {bad}")
        return expected


def load_calibration(folder: Path | str, rubric: Rubric, catalog: Catalog) -> list[CalibrationCase]:
    """Every case in the folder's YAML files, checked against the rubric and the scenarios."""
    folder = Path(folder)
    cases: list[CalibrationCase] = []
    adapter = TypeAdapter(list[CalibrationCase])
    criteria = {c.id for c in rubric.criteria}
    for path in sorted(folder.glob("*.yaml")):
        try:
            batch = adapter.validate_python(read_yaml(path))
        except ValidationError as exc:
            raise CatalogError(describe_validation_error(path, exc)) from None
        for case in batch:
            if set(case.expected) != criteria:
                missing, extra = sorted(criteria - set(case.expected)), sorted(set(case.expected) - criteria)
                raise CatalogError(f"{path}: case '{case.id}' field 'expected': missing {missing}, unknown {extra}")
            if case.scenario not in catalog.scenarios:
                raise CatalogError(f"{path}: case '{case.id}' field 'scenario': unknown scenario '{case.scenario}'")
        cases.extend(batch)
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"{folder}: duplicate case ids")
    if not cases:
        raise CatalogError(f"{folder}: no calibration cases found")
    return cases


def to_judge_case(case: CalibrationCase, catalog: Catalog, pad_rep: bool = False) -> JudgeCase:
    scenario = catalog.scenario(case.scenario).public()
    turns = []
    for index, line in enumerate(case.turns):
        ((speaker, text),) = line.items()
        if pad_rep and speaker == "rep":
            text = text + PADDING
        turns.append(JudgeTurn(index=index, speaker=speaker, text=text))
    return JudgeCase(
        episode_id=f"calibration:{case.id}" + (":padded" if pad_rep else ""),
        context=deal_context(scenario),
        turns=turns,
        outcome=case.outcome,
    )


# --------------------------------------------------------------------------- figures (pure)


class Agreement(BaseModel):
    n: int
    spearman: float | None
    qwk: float | None
    mae: float | None


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def agreement(expected: list[int], judged: list[int]) -> Agreement:
    """Spearman rho, quadratic-weighted Cohen's kappa and mean absolute error over paired scores.

    A constant series has no rank correlation; that is reported as None, not as 0.
    """
    n = len(expected)
    if n == 0:
        return Agreement(n=0, spearman=None, qwk=None, mae=None)
    mae = statistics.fmean(abs(a - b) for a, b in zip(expected, judged, strict=True))
    rho = None
    if len(set(expected)) > 1 and len(set(judged)) > 1:
        rho = _finite(spearmanr(expected, judged).statistic)
    kappa = None
    if len(set(expected) | set(judged)) > 1:
        kappa = _finite(cohen_kappa_score(expected, judged, labels=SCORES, weights="quadratic"))
    return Agreement(n=n, spearman=rho, qwk=kappa, mae=round(mae, 4))


def attack_success_rate(cases: list[CalibrationCase], judgements: dict[str, Judgement]) -> float | None:
    """Share of (manipulation case, criterion) pairs the behaviour deserves <= 2 on but the judge gave >= 4."""
    attempts = successes = 0
    for case in cases:
        if not case.manipulation or case.id not in judgements:
            continue
        scored = judgements[case.id].scored
        for criterion, label in case.expected.items():
            if label <= ATTACK_LOW and criterion in scored:
                attempts += 1
                successes += scored[criterion] >= ATTACK_HIGH
    return round(successes / attempts, 4) if attempts else None


def mean_score(judgement: Judgement) -> float | None:
    scores = list(judgement.scored.values())
    return statistics.fmean(scores) if scores else None


def verbosity_shift(plain: list[Judgement], padded: list[Judgement]) -> float | None:
    """Mean over cases of (mean score with padded rep turns) - (mean score as written)."""
    shifts = []
    for a, b in zip(plain, padded, strict=True):
        ma, mb = mean_score(a), mean_score(b)
        if ma is not None and mb is not None:
            shifts.append(mb - ma)
    return round(statistics.fmean(shifts), 4) if shifts else None


class CalibrationReport(BaseModel):
    judge_model: str
    rubric_id: str
    cases: int
    manipulation_cases: int
    per_criterion: dict[str, Agreement]
    overall: Agreement
    scored: int
    failed: int
    unsupported_share: float | None
    attack_success_rate: float | None
    verbosity_cases: int
    verbosity_shift: float | None
    verbosity_tolerance: float = VERBOSITY_TOLERANCE
    judge_calls: int
    judge_tokens: int


def summarise(
    cases: list[CalibrationCase],
    rubric: Rubric,
    judgements: dict[str, Judgement],
    padded: list[Judgement],
    plain_for_padding: list[Judgement],
    judge_model: str,
) -> CalibrationReport:
    honest = [c for c in cases if not c.manipulation]
    pairs: dict[str, tuple[list[int], list[int]]] = {c.id: ([], []) for c in rubric.criteria}
    all_expected: list[int] = []
    all_judged: list[int] = []
    scored = failed = unsupported = 0
    for case in cases:
        judgement = judgements[case.id]
        failed += len(judgement.failures)
        scored += len(judgement.scored)
        unsupported += judgement.unsupported
        if case.manipulation:
            continue
        for criterion, score in judgement.scored.items():
            pairs[criterion][0].append(case.expected[criterion])
            pairs[criterion][1].append(score)
            all_expected.append(case.expected[criterion])
            all_judged.append(score)
    every = list(judgements.values()) + padded
    return CalibrationReport(
        judge_model=judge_model,
        rubric_id=rubric.id,
        cases=len(cases),
        manipulation_cases=len(cases) - len(honest),
        per_criterion={cid: agreement(*pair) for cid, pair in pairs.items()},
        overall=agreement(all_expected, all_judged),
        scored=scored,
        failed=failed,
        unsupported_share=round(unsupported / scored, 4) if scored else None,
        attack_success_rate=attack_success_rate(cases, judgements),
        verbosity_cases=len(padded),
        verbosity_shift=verbosity_shift(plain_for_padding, padded),
        judge_calls=sum(len(j.calls) for j in every),
        judge_tokens=sum(c.tokens_in + c.tokens_out for j in every for c in j.calls),
    )


async def calibrate(
    cases: list[CalibrationCase],
    rubric: Rubric,
    catalog: Catalog,
    profile: Profile,
    verbosity_cases: int = 6,
    concurrency: int = 4,
) -> tuple[CalibrationReport, dict[str, Judgement]]:
    """Judge every case (and padded copies of the first honest ones) and summarise."""
    gate = asyncio.Semaphore(max(1, concurrency // 2))

    async def run(judge_case: JudgeCase) -> Judgement:
        async with gate:
            return await judge(judge_case, rubric, profile, concurrency=2)

    plain = await asyncio.gather(*(run(to_judge_case(c, catalog)) for c in cases))
    judgements = {case.id: j for case, j in zip(cases, plain, strict=True)}
    honest = [c for c in cases if not c.manipulation][:verbosity_cases]
    padded = list(await asyncio.gather(*(run(to_judge_case(c, catalog, pad_rep=True)) for c in honest)))
    report = summarise(
        cases, rubric, judgements, padded, [judgements[c.id] for c in honest], judge_model=profile.model_id
    )
    return report, judgements
