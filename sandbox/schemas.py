"""Domain types shared by every stage of the pipeline.

Content types (strategies, prospects, scenarios) are loaded from YAML and frozen.
Run types (actions, turns, transcripts) are what the engine writes and what the judge,
metrics and reports read. Private information lives in fields that the prompt builder
for the other side never reads (see ``prompts.py``); keeping it in separate sub-models
makes that boundary easy to see and to test.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

Speaker = Literal["rep", "prospect"]
Difficulty = Literal["easy", "normal", "hard"]
"""A prospect's practice level: ``normal`` is its persona file as written, ``easy``/``hard`` apply the
file's ``difficulty:`` block (see :func:`sandbox.catalog.at_difficulty`)."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- content


class Source(Frozen):
    """A seed document a piece of content is derived from (cited, never quoted)."""

    title: str = Field(min_length=1)
    author: str = Field(min_length=1)


class Strategy(Frozen):
    """How the sales rep behaves. Only the rep's prompt reads it; the judge never does."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    guidance: list[str] = Field(min_length=1, description="Behaviours the rep follows, in the rep's voice.")
    on_price_pushback: str = Field(min_length=1, description="What the rep does when the price is challenged.")
    anti_pattern: bool = Field(False, description="True for strategies the sources warn against.")
    sources: list[Source] = Field(min_length=1)


class ProspectPrivate(Frozen):
    """What the prospect knows and the rep must discover. Never reaches the rep's prompt.

    Prices are fractions of the scenario's list price so one persona fits every scenario.
    """

    real_need: str = Field(min_length=1)
    budget_ratio: float = Field(gt=0, le=3)
    walk_away_ratio: float = Field(gt=0, le=3, description="Most the prospect will pay, as a fraction of list.")
    alternatives: list[str] = Field(default_factory=list)
    behaviour: list[str] = Field(min_length=1, description="How this prospect acts in the conversation.")
    wins_them_over: str = Field(min_length=1)
    shuts_them_down: str = Field(min_length=1)

    @model_validator(mode="after")
    def _budget_below_walk_away(self) -> ProspectPrivate:
        if self.budget_ratio > self.walk_away_ratio:
            raise ValueError("budget_ratio must not exceed walk_away_ratio")
        return self


class ProspectPublic(Frozen):
    """All the rep may know about the prospect before the call."""

    display_name: str
    public_profile: str


class PrivateOverrides(Frozen):
    """One difficulty level's changes to a prospect's private brief; a field left out keeps the file's value."""

    real_need: str | None = Field(None, min_length=1)
    budget_ratio: float | None = Field(None, gt=0, le=3)
    walk_away_ratio: float | None = Field(None, gt=0, le=3)
    alternatives: list[str] | None = None
    behaviour: list[str] | None = Field(None, min_length=1)
    wins_them_over: str | None = Field(None, min_length=1)
    shuts_them_down: str | None = Field(None, min_length=1)


class ProspectDifficulty(Frozen):
    """Easier and harder versions of a prospect for ``sandbox practice --difficulty`` (walk-away margin,
    how much it reveals, patience), written in the persona file; ``normal`` is the file as it is."""

    easy: PrivateOverrides | None = None
    hard: PrivateOverrides | None = None


class Prospect(Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, description="Catalog label (may name the persona's type).")
    display_name: str = Field(min_length=1, description="What the prospect is called in the dialogue.")
    public_profile: str = Field(min_length=1, description="What the rep may know before the call.")
    private: ProspectPrivate
    sources: list[Source] = Field(min_length=1)
    difficulty: ProspectDifficulty | None = Field(
        None, description="Practice levels; an episode spec's ``difficulty`` picks one (default: the file as written)."
    )

    def public(self) -> ProspectPublic:
        return ProspectPublic(display_name=self.display_name, public_profile=self.public_profile)

    @model_validator(mode="after")
    def _levels_make_valid_briefs(self) -> Prospect:
        for level in ("easy", "hard"):
            overrides = getattr(self.difficulty, level, None) if self.difficulty is not None else None
            if overrides is not None:
                try:
                    ProspectPrivate(**{**self.private.model_dump(), **overrides.model_dump(exclude_none=True)})
                except ValueError as exc:
                    problem = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
                    raise ValueError(f"difficulty.{level}: {problem}") from None
        return self

    @model_serializer(mode="wrap")
    def _omit_no_difficulty(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """A prospect without practice levels dumps as it did before they existed (transcripts, casts)."""
        data = handler(self)
        if data.get("difficulty", 0) is None:
            data.pop("difficulty")
        return data


class ScenarioPrivate(Frozen):
    """The rep's side of the deal. Never reaches the prospect's prompt."""

    floor_price: float = Field(gt=0, description="Lowest price the rep may accept.")
    may_concede: list[str] = Field(default_factory=list)
    must_not_concede: list[str] = Field(default_factory=list)


class ScenarioPublic(Frozen):
    """What the prospect (and the judge) may know about the deal on the table."""

    title: str
    product: str
    seller: str
    rep_name: str
    list_price: float
    currency: str
    price_unit: str

    def money(self, amount: float) -> str:
        return f"{amount:,.0f} {self.currency}"


class Scenario(Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    product: str = Field(min_length=1)
    seller: str = Field(min_length=1)
    rep_name: str = Field("Jordan", min_length=1)
    list_price: float = Field(gt=0)
    currency: str = "USD"
    price_unit: str = Field(min_length=1, description="What one price buys, e.g. 'per year for 50 seats'.")
    rep_private: ScenarioPrivate
    sources: list[Source] = Field(default_factory=list)

    def public(self) -> ScenarioPublic:
        return ScenarioPublic(
            title=self.title,
            product=self.product,
            seller=self.seller,
            rep_name=self.rep_name,
            list_price=self.list_price,
            currency=self.currency,
            price_unit=self.price_unit,
        )

    @model_validator(mode="after")
    def _floor_below_list(self) -> Scenario:
        if self.rep_private.floor_price > self.list_price:
            raise ValueError("rep_private.floor_price must not exceed list_price")
        return self

    def money(self, amount: float) -> str:
        return f"{amount:,.0f} {self.currency}"


class ProspectBrief(Frozen):
    """A prospect's private figures resolved against one scenario's list price."""

    budget: float
    walk_away_price: float


def brief_for(prospect: Prospect, scenario: Scenario) -> ProspectBrief:
    price = scenario.list_price
    return ProspectBrief(
        budget=round(prospect.private.budget_ratio * price, 2),
        walk_away_price=round(prospect.private.walk_away_ratio * price, 2),
    )


# --------------------------------------------------------------------------- model settings


class Deployment(Frozen):
    """One server of a model that several serve (``ModelSettings.deployments``): calls to the model are
    spread over them by litellm's Router, which also sets a failing one aside for a while."""

    api_base: str = Field(min_length=1, description="This server's OpenAI-compatible URL (vLLM, Ollama's /v1...).")
    model: str | None = Field(
        None, min_length=1, description="The model's name at this server, where it differs (Ollama's qwen2.5:7b)."
    )
    weight: float | None = Field(None, gt=0, description="Its share of the calls, relative to the others' weights.")
    rpm: int | None = Field(None, gt=0, description="Requests per minute this server takes (the Router's limit).")
    tpm: int | None = Field(None, gt=0, description="Tokens per minute this server takes (the Router's limit).")


class ModelSettings(Frozen):
    """Which model plays a role and how it is called, as the user wrote it. Keys are read from the
    environment only. What the model can do is decided once, by its profile (``sandbox.profiles``)."""

    model: str = Field("local", min_length=1, description="'local' (the embedded model) or a litellm model id.")
    api_base: str | None = Field(None, description="An OpenAI-compatible server (vLLM, llama.cpp, Ollama's /v1...).")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(120, gt=0)
    timeout_s: float = Field(60, gt=0)
    structured: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto",
        description="How structured output is asked for: a JSON schema in response_format, JSON mode, or "
        "instructions in the prompt only. auto: json_schema for an api_base server, litellm's look-up otherwise.",
    )
    turn_mode: Literal["auto", "two-call", "one-call"] = "auto"
    unstated_offers: Literal["auto", "count", "drop"] = Field(
        "auto",
        description="An offer whose price its own message does not state: counted as an offer (noted on the "
        "turn) or dropped as talk. auto: count in one-call turns; a two-call turn always drops it.",
    )
    transport: Literal["auto", "litellm"] = Field(
        "auto",
        description="How requests travel. auto: the OpenAI wire format for OpenAI and OpenAI-compatible servers, "
        "litellm for other providers; litellm: always litellm.",
    )
    evidence_mode: Literal["auto", "free", "constrained"] = Field(
        "auto", description="Judge only: constrain evidence quotes to transcript sentences (auto: the profile's)."
    )
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    deployments: tuple[Deployment, ...] = Field(
        (), description="Several servers of this model, instead of one api_base: calls go through litellm's Router."
    )
    fallbacks: tuple[ModelSettings, ...] = Field(
        (),
        description="Other models to ask, in order, once this one has no deployment left to try in a call "
        "(each gets the same request; each its own api_base or deployments).",
    )

    @field_validator("deployments")
    @classmethod
    def _deployments(cls, value: tuple[Deployment, ...], info: ValidationInfo) -> tuple[Deployment, ...]:
        if value and info.data.get("api_base"):
            raise ValueError("give either api_base or deployments, not both")
        bases = [d.api_base.rstrip("/") for d in value]
        if len(set(bases)) != len(bases):
            raise ValueError("the same api_base is given twice")
        return value

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _fallback_ids(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [{"model": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: tuple[ModelSettings, ...], info: ValidationInfo) -> tuple[ModelSettings, ...]:
        for index, fallback in enumerate(value):
            if fallback.fallbacks:
                raise ValueError(f"fallback {index} has fallbacks of its own (give one flat list)")
            if fallback.model == info.data.get("model") and not (fallback.api_base or fallback.deployments):
                raise ValueError(f"fallback {index} is the model itself")
        return value

    @model_serializer(mode="wrap")
    def _omit_neutral_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Fields added after runs were recorded are left out at their default, so episode ids and spec
        fingerprints (hashes of these dumps) stay what they were and old run folders still resume."""
        data = handler(self)
        for name, default in _NEUTRAL_DEFAULTS.items():
            if data.get(name) == default:
                data.pop(name)
        for name in _EMPTY_BY_DEFAULT:
            if name in data and not data[name]:
                data.pop(name)
        return data


_NEUTRAL_DEFAULTS = {"structured": "auto", "transport": "auto", "unstated_offers": "auto"}
_EMPTY_BY_DEFAULT = ("deployments", "fallbacks")  # left out when empty (a tuple, or a list in JSON mode)


# --------------------------------------------------------------------------- run records


class ActionKind(StrEnum):
    OFFER = "offer"
    ACCEPT = "accept"
    REJECT = "reject"
    WALK_AWAY = "walk_away"
    NONE = "none"


class Action(Frozen):
    """What a turn does besides talk. A deal needs an ACCEPT of the other side's standing offer."""

    kind: ActionKind = ActionKind.NONE
    price: float | None = None
    terms: str | None = None

    @model_validator(mode="after")
    def _offer_has_price(self) -> Action:
        if self.kind is ActionKind.OFFER and (self.price is None or self.price <= 0):
            raise ValueError("an offer needs a positive price")
        return self


class ModelCall(BaseModel):
    """One request to a model, successful or not. Tokens are always counted; cost when known."""

    model: str
    purpose: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cost_usd: float | None = None
    attempts: int = Field(1, description="Requests sent; 0 when answered from the local cache.")
    cached: bool = False
    error: str | None = None


class Turn(BaseModel):
    index: int
    speaker: Speaker
    message: str
    action: Action
    calls: list[ModelCall] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="Engine adjustments, e.g. an invalid accept.")


class OutcomeStatus(StrEnum):
    DEAL = "deal"
    WALK_AWAY = "walk_away"
    MAX_TURNS = "max_turns"
    FAILED = "failed"


class Outcome(BaseModel):
    status: OutcomeStatus
    price: float | None = None
    decided_by: Speaker | None = None
    reason: str | None = None


class PrefixTurn(Frozen):
    """A turn replayed as it was said: what a branched episode shares with its source."""

    speaker: Speaker
    message: str
    action: Action = Action()


class Prefix(Frozen):
    """The shared beginning of a branched episode (``sandbox branch``, a spec's ``branch_from``).

    Its turns are replayed, not regenerated, so every continuation starts from the same history;
    they live in the spec (and so in the episode id), which keeps an episode self-contained: a
    worker needs no file to play it, and a changed source makes a different episode.
    """

    source: str = Field(min_length=1, description="Where the turns came from: a transcript file or RUN#EPISODE.")
    source_episode_id: str
    source_strategy: str
    turns: tuple[PrefixTurn, ...] = Field(min_length=1)
    judged: bool = Field(
        True,
        description="Whether the judge scores the replayed turns as this episode's play: yes for a practice "
        "session's own turns kept after an undo; no for a branch's shared beginning, which another strategy said.",
    )


class EpisodeSpec(Frozen):
    """Everything that determines an episode. Its id is a hash of these axes."""

    strategy: str
    prospect: str
    scenario: str
    seed: int = 1
    max_turns: int = Field(12, ge=2, le=200)
    opener: Speaker = "rep"
    rep_model: ModelSettings = ModelSettings()
    prospect_model: ModelSettings = ModelSettings()
    prefix: Prefix | None = Field(None, description="Turns replayed before the agents speak (a branch).")
    difficulty: Difficulty = Field(
        "normal", description="The prospect's level: its persona file's easy/hard overrides of the private brief."
    )

    @field_validator("strategy", "prospect", "scenario")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _prefix_alternates_from_the_opener(self) -> EpisodeSpec:
        if self.prefix is not None:
            if len(self.prefix.turns) >= self.max_turns:
                raise ValueError(f"a prefix of {len(self.prefix.turns)} turns leaves none of {self.max_turns} to play")
            speaker = self.opener
            for index, turn in enumerate(self.prefix.turns):
                if turn.speaker != speaker:
                    raise ValueError(f"prefix turn {index} is the {turn.speaker}'s, but the {speaker} speaks then")
                speaker = "prospect" if speaker == "rep" else "rep"
        return self

    @model_serializer(mode="wrap")
    def _omit_no_prefix(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Episodes recorded before branching and practice levels existed keep their ids: no prefix and
        the normal level are left out of the dump."""
        data = handler(self)
        if data.get("prefix", 0) is None:
            data.pop("prefix")
        if data.get("difficulty") == "normal":
            data.pop("difficulty")
        return data

    @property
    def episode_id(self) -> str:
        data = self.model_dump(mode="json")
        if "prefix" in data:  # the turns and their source episode make a prefix; not how its path was typed
            data["prefix"].pop("source")
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Cast(BaseModel):
    """Snapshot of the content an episode used, so a transcript stands on its own."""

    strategy: Strategy
    prospect: Prospect
    scenario: Scenario
    brief: ProspectBrief


class Transcript(BaseModel):
    episode_id: str
    spec: EpisodeSpec
    cast: Cast
    turns: list[Turn] = Field(default_factory=list)
    failed_turn_calls: list[ModelCall] = Field(
        default_factory=list, description="Calls behind a turn that never completed (the failure's evidence)."
    )
    outcome: Outcome
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    wall_time_s: float = 0.0
    sandbox_version: str = ""

    @property
    def prefix_turns(self) -> int:
        """How many of the turns were replayed from a source (a branch's shared beginning), not played."""
        return len(self.spec.prefix.turns) if self.spec.prefix is not None else 0

    @property
    def played_from(self) -> int:
        """The first turn that is this episode's own play: after a branch's shared beginning, which
        another strategy said (the judge may not quote it, its behaviour is not measured as this
        episode's); 0 when there is none, or the replayed turns were the same player's (a practice undo)."""
        prefix = self.spec.prefix
        return 0 if prefix is None or prefix.judged else len(prefix.turns)

    @property
    def calls(self) -> list[ModelCall]:
        return [call for turn in self.turns for call in turn.calls] + list(self.failed_turn_calls)


# --------------------------------------------------------------------------- judge


class Criterion(Frozen):
    """One rubric criterion, scored 1-5, with behavioural anchors at levels 1, 3 and 5."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    about: Literal["rep", "prospect", "both"] = Field(description="Whose turns the criterion is about.")
    quote_either_side: bool = Field(
        False,
        description="Evidence may quote either speaker. By default a quote supports a score only when it "
        "comes from a turn of the side the criterion is about.",
    )
    description: str = Field(min_length=1)
    levels: dict[int, str]
    sources: list[Source] = Field(min_length=1)

    @field_validator("levels")
    @classmethod
    def _anchored(cls, levels: dict[int, str]) -> dict[int, str]:
        missing = {1, 3, 5} - set(levels)
        if missing:
            raise ValueError(f"needs descriptions for levels 1, 3 and 5 (missing {sorted(missing)})")
        if any(level not in range(1, 6) for level in levels):
            raise ValueError("levels must be between 1 and 5")
        return dict(sorted(levels.items()))


class Rubric(Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    criteria: list[Criterion] = Field(min_length=8, max_length=12)

    @field_validator("criteria")
    @classmethod
    def _unique(cls, criteria: list[Criterion]) -> list[Criterion]:
        ids = [c.id for c in criteria]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate criterion ids: {', '.join(duplicates)}")
        return criteria

    def criterion(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(criterion_id)


class Evidence(BaseModel):
    turn: int
    quote: str
    verified: bool = False
    problem: str | None = Field(None, description="Why an unverified quote does not count.")


class CriterionScore(BaseModel):
    """A judge's verdict on one criterion, or the recorded reason it has none."""

    criterion: str
    score: int | None = None
    rationale: str = ""
    evidence: list[Evidence] = Field(default_factory=list)
    supported: bool = False
    error: str | None = None


class Judgement(BaseModel):
    episode_id: str
    judge_model: str
    rubric_id: str
    scores: list[CriterionScore]
    calls: list[ModelCall] = Field(default_factory=list)
    self_preference: list[Speaker] = Field(
        default_factory=list, description="Roles played by the judge's own model: a self-preference risk."
    )

    @property
    def scored(self) -> dict[str, int]:
        return {s.criterion: s.score for s in self.scores if s.score is not None}

    @property
    def failures(self) -> dict[str, str]:
        return {s.criterion: s.error for s in self.scores if s.error}

    @property
    def unsupported(self) -> int:
        return sum(1 for s in self.scores if s.score is not None and not s.supported)


class AggregateScore(BaseModel):
    mean: float
    spread: float = Field(description="Population standard deviation across judges.")
    n: int


class JudgePanel(BaseModel):
    """Several judges on one transcript: each verdict kept, plus the per-criterion aggregate."""

    episode_id: str
    judgements: list[Judgement]
    aggregate: dict[str, AggregateScore]
