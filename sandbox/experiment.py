"""Experiment specs: the axes of a strategy comparison, and their expansion into episodes.

The grid is complete (every strategy meets the same prospect x scenario x seed x opener x model
pair), so strategy comparisons are paired by construction.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from sandbox.catalog import Catalog, CatalogError, at_difficulty, load_model
from sandbox.schemas import Difficulty, EpisodeSpec, ModelSettings, Prefix, Speaker


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    # At most this many requests to the model at once (a provider's concurrency cap). Requests wait
    # for a free place before their timeout starts, instead of timing out in the provider's queue.
    max_in_flight: int | None = Field(None, ge=1)


class RoleModels(BaseModel):
    """Models per role. A list varies that role's model; rep x prospect lists give a cross-play matrix."""

    model_config = ConfigDict(extra="forbid")

    rep: list[ModelSettings] = Field(default_factory=lambda: [ModelSettings()], min_length=1)
    prospect: list[ModelSettings] = Field(default_factory=lambda: [ModelSettings()], min_length=1)
    judge: list[ModelSettings] = Field(default_factory=list)

    @field_validator("rep", "prospect", "judge", mode="before")
    @classmethod
    def _strings_are_model_ids(cls, value: object) -> object:
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            return [{"model": item} if isinstance(item, str) else item for item in value]
        return value


class BranchFrom(BaseModel):
    """Every episode continues one saved dialogue from turn ``at`` (see :mod:`sandbox.branching`)."""

    model_config = ConfigDict(extra="forbid")

    transcript: str = Field(min_length=1, description="A transcript/result JSON file, or RUN_FOLDER#EPISODE_ID.")
    at: int = Field(ge=1, description="The first turn the agents say; the turns before it are replayed.")
    prefix: Prefix | None = Field(None, description="The replayed turns; read from `transcript` when the spec loads.")


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    strategies: list[str] = Field(min_length=1)
    branch_from: BranchFrom | None = None  # before the axes it may fill in, so their validators see it
    prospects: list[str] = Field(
        default_factory=list, validate_default=True, description="Required, unless branch_from gives them."
    )
    scenarios: list[str] = Field(
        default_factory=list, validate_default=True, description="Required, unless branch_from gives them."
    )
    seeds: int | list[int] = Field(1, description="A count (1..n) or an explicit list.")
    openers: Literal["rep", "prospect", "both"] | list[Speaker] = "rep"
    models: RoleModels = Field(default_factory=RoleModels)
    max_turns: int = Field(12, ge=2, le=200)
    difficulty: Difficulty = Field(
        "normal", description="Every prospect at this level of its persona file; a branch takes its source's."
    )
    temperature: float | None = Field(None, ge=0, le=2, description="Overrides every agent model's temperature.")
    concurrency: int = Field(4, ge=1, le=1024)
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict, description="Keyed by model id.")
    baseline: str | None = None
    budget_usd: float | None = Field(None, gt=0)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError("a seed count must be at least 1")
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a seed list must be non-empty and without repeats")
        return value

    @field_validator("prospects", "scenarios")
    @classmethod
    def _named_unless_a_branch_gives_them(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value and info.data.get("branch_from") is None:
            raise ValueError("must name at least one id (or come from branch_from)")
        return value

    @model_validator(mode="after")
    def _baseline_is_a_strategy(self) -> ExperimentSpec:
        if self.baseline is not None and self.baseline not in self.strategies:
            raise ValueError(f"baseline '{self.baseline}' is not one of the strategies")
        if self.branch_from is not None and "openers" in self.model_fields_set:
            raise ValueError("openers: a branch opens as its source did; leave openers out with branch_from")
        for axis in ("strategies", "prospects", "scenarios"):
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} has repeated ids")
        return self

    @property
    def seed_list(self) -> list[int]:
        return list(range(1, self.seeds + 1)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def opener_list(self) -> list[Speaker]:
        if self.branch_from is not None and self.branch_from.prefix is not None:
            return [self.branch_from.prefix.turns[0].speaker]  # a branch starts as its source did
        if self.openers == "both":
            return ["rep", "prospect"]
        if isinstance(self.openers, str):
            return [self.openers]  # type: ignore[list-item]
        return list(dict.fromkeys(self.openers))

    @property
    def fingerprint(self) -> str:
        data = self.model_dump(mode="json")
        if data["branch_from"] is None:  # specs written before branching keep their fingerprints
            data.pop("branch_from")
        if data["difficulty"] == "normal":  # and those written before practice levels
            data.pop("difficulty")
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def all_models(self) -> list[ModelSettings]:
        return [*self.models.rep, *self.models.prospect, *self.models.judge]


def load_experiment(path: Path | str, catalog: Catalog | None = None) -> ExperimentSpec:
    """Parse and validate a spec; with a catalog, also check that every id exists."""
    path = Path(path)
    spec = load_model(path, ExperimentSpec)
    if spec.branch_from is not None:
        from sandbox.branching import BranchError

        try:
            spec = resolve_branch(spec)
        except BranchError as exc:
            raise CatalogError(f"{path}: field 'branch_from': {exc}") from None
    if catalog is not None:
        for field, known in (
            ("strategies", catalog.strategies),
            ("prospects", catalog.prospects),
            ("scenarios", catalog.scenarios),
        ):
            for item in getattr(spec, field):
                if item not in known:
                    raise CatalogError(
                        f"{path}: field '{field}': unknown id '{item}' (known: {', '.join(sorted(known))})"
                    )
        for prospect in spec.prospects:
            try:
                at_difficulty(catalog.prospect(prospect), spec.difficulty)
            except CatalogError as exc:
                raise CatalogError(f"{path}: field 'difficulty': {exc}") from None
    return spec


def resolve_branch(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec with its branch's prefix read from the source, and the source's prospect, scenario and
    difficulty as its own (a branch keeps the prospect it was talking to, at the level it was played;
    naming another is refused)."""
    from sandbox.branching import BranchError, load_source, prefix_at

    branch = spec.branch_from
    assert branch is not None
    source = load_source(branch.transcript)
    prefix = prefix_at(source, branch.at, branch.transcript)
    if len(prefix.turns) >= spec.max_turns:
        raise BranchError(f"max_turns {spec.max_turns} leaves no turn after the {len(prefix.turns)} replayed")
    update: dict[str, object] = {"branch_from": branch.model_copy(update={"prefix": prefix})}
    for axis, value in (("prospects", source.spec.prospect), ("scenarios", source.spec.scenario)):
        given = getattr(spec, axis)
        if given and given != [value]:
            raise BranchError(f"{axis} {given} differ from the source's '{value}'; a branch keeps its prospect")
        update[axis] = [value]
    level = source.spec.difficulty
    if "difficulty" in spec.model_fields_set and spec.difficulty != level:
        given = spec.difficulty
        raise BranchError(f"difficulty '{given}' differs from the source's '{level}'; a branch keeps its level")
    update["difficulty"] = level
    return spec.model_copy(update=update)


def _with_temperature(settings: ModelSettings, temperature: float | None) -> ModelSettings:
    return settings if temperature is None else settings.model_copy(update={"temperature": temperature})


def expand(spec: ExperimentSpec) -> list[EpisodeSpec]:
    """Every episode of the full grid, in a stable order, each with its deterministic id."""
    prefix = None
    if spec.branch_from is not None:
        if spec.branch_from.prefix is None:
            raise ValueError("branch_from has no prefix yet: load the spec with load_experiment or resolve_branch")
        prefix = spec.branch_from.prefix
    episodes = []
    for scenario, prospect, seed, opener, rep_model, prospect_model, strategy in itertools.product(
        spec.scenarios,
        spec.prospects,
        spec.seed_list,
        spec.opener_list,
        spec.models.rep,
        spec.models.prospect,
        spec.strategies,
    ):
        episodes.append(
            EpisodeSpec(
                strategy=strategy,
                prospect=prospect,
                scenario=scenario,
                seed=seed,
                max_turns=spec.max_turns,
                opener=opener,
                rep_model=_with_temperature(rep_model, spec.temperature),
                prospect_model=_with_temperature(prospect_model, spec.temperature),
                prefix=prefix,
                difficulty=spec.difficulty,
            )
        )
    return episodes
