"""Model profiles: everything known about a model, in one place, resolved once per run.

A role's :class:`~sandbox.schemas.ModelSettings` is what the user wrote. :func:`resolve` turns it
into a :class:`Profile`: how to reach the model (its :class:`~sandbox.models.Endpoint`) and what it
can do (structured-output form, turn mode, judge evidence mode, requests at once, sampling
defaults). The embedded model is one profile among others. Code below the runner asks the profile;
it never compares a model's name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sandbox.local_server import LOCAL_MODEL_NAME
from sandbox.models.endpoint import Endpoint, RouterDeployment, StructuredMode, Transport, split_model
from sandbox.schemas import Deployment, ModelSettings

EMBEDDED_ID = "local"  # what a spec or the CLI writes for the embedded model
PLACEHOLDER_KEY = "sk-local-no-key"  # self-hosted servers ignore it; the OpenAI client insists on one
# Providers that speak the OpenAI wire format: with an api_base, a server of the user's own.
OPENAI_COMPATIBLE = {"openai", "hosted_vllm", "lm_studio"}
# Servers of the user's own with a key variable of their own, as litellm reads them (openai/ at an
# api_base uses OPENAI_API_KEY, as litellm does).
SERVER_KEY_ENV = {"hosted_vllm": "HOSTED_VLLM_API_KEY", "lm_studio": "LM_STUDIO_API_KEY"}

TurnMode = Literal["one-call", "two-call"]


class ProfileError(ValueError):
    """A role's model cannot be resolved (the embedded model with no server running)."""


EvidenceMode = Literal["free", "constrained"]


@dataclass(frozen=True)
class Profile:
    """One role's model, resolved: how to call it and what it can do.

    ``turn_mode``: a model that writes well inside JSON (hosted models, open models of about 7B and
    up) produces a turn in one structured call; a tiny one (the embedded 135M) writes its message as
    text, then a second, grammar-constrained call extracts the action.
    """

    settings: ModelSettings
    endpoint: Endpoint
    turn_mode: TurnMode
    evidence_mode: EvidenceMode
    judge_concurrency: int  # criteria in flight per transcript when this model judges
    max_in_flight: int | None = None  # requests at once the endpoint takes (None: no cap of its own)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    embedded: bool = False  # the bundled SmolLM2-135M: plumbing and demos, not research conclusions
    # How a two-call turn treats a message that is empty, a label or an echo of the other side:
    # tried again with another seed, up to this many messages in all.
    message_attempts: int = 2
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific sampling, sent as-is

    @property
    def model_id(self) -> str:
        """The id the user wrote: what rate limits, tables and reports are keyed by."""
        return self.settings.model

    @property
    def unstated_offers(self) -> Literal["count", "drop"]:
        """An offer whose price its own message does not state: ``count`` keeps it as the offer (noted on the
        turn), ``drop`` treats the turn as talk. A one-call model wrote both, so by default its offer counts;
        a two-call turn's price is the extractor's reading of the words, so one the words lack is dropped."""
        if self.turn_mode == "two-call" or self.settings.unstated_offers == "drop":
            return "drop"
        return "count"

    @property
    def temperature(self) -> float:
        return self.settings.temperature

    @property
    def max_tokens(self) -> int:
        return self.settings.max_tokens

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    def sampling(self) -> dict[str, Any]:
        """Extra request fields for free-text turns: repetition controls and server-specific sampling
        (sent as ``extra_body``, which both transports merge into the request body as-is)."""
        fields: dict[str, Any] = {
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }
        if self.extra_body:
            fields["extra_body"] = dict(self.extra_body)
        return fields


# --------------------------------------------------------------------------- the embedded model

EMBEDDED_SLOTS = 4  # the embedded server's default parallel slots when nobody says otherwise
EMBEDDED_FREQUENCY_PENALTY = 0.5  # the 135M model loops on one sentence without it
# llama.cpp's DRY sampler ("don't repeat yourself") penalises continuing any token sequence already in
# the context, prompt included: it stops the 135M model copying the other side's line or its own last
# one, which a frequency penalty (single tokens) does not. Measured by bench/embedded_dialogue.py.
EMBEDDED_SAMPLING = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 3, "dry_penalty_last_n": 4096}
EMBEDDED_MESSAGE_ATTEMPTS = 4  # an echo or a loop is thrown away and written again with another seed
EMBEDDED_JUDGE_CONCURRENCY = 1  # the slot that judged the last criterion still holds the transcript in cache
HOSTED_JUDGE_CONCURRENCY = 4


def is_embedded(settings: ModelSettings) -> bool:
    """Whether this role needs the embedded server (the one name compared anywhere)."""
    return settings.model == EMBEDDED_ID


def needs_embedded_server(settings: Iterable[ModelSettings]) -> bool:
    return any(is_embedded(s) for s in settings)


# --------------------------------------------------------------------------- a person

PERSON_ID = "human"  # the pseudo-model of a side a person typed (sandbox practice); no model plays it
PERSON = ModelSettings(model=PERSON_ID)


def is_person(settings: ModelSettings) -> bool:
    """Whether a person played this side, not a model (the one place that knows how that is written):
    its turns were typed, nothing can be asked of it, and a branch gives the side to an agent."""
    return settings.model == PERSON_ID


def _embedded(settings: ModelSettings, api_base: str | None, slots: int) -> Profile:
    if settings.deployments:
        raise ProfileError("model 'local' is the embedded server: it has no deployments")
    if not api_base:
        raise ProfileError("model 'local' needs the embedded server; none is running")
    endpoint = Endpoint(
        model=f"openai/{LOCAL_MODEL_NAME}",
        api_base=api_base,
        api_key=PLACEHOLDER_KEY,
        # llama.cpp turns any JSON schema into a grammar: always valid JSON, strict or not.
        structured=_structured(settings, "json_schema"),
        strict_schema=True,
        model_id=settings.model,
        transport=_transport(settings, "openai"),  # llama.cpp speaks the OpenAI wire format
        priced=False,
    )
    return Profile(
        settings=settings,
        endpoint=endpoint,
        turn_mode=_turn_mode(settings, "two-call"),
        evidence_mode=_evidence_mode(settings, "constrained"),
        judge_concurrency=EMBEDDED_JUDGE_CONCURRENCY,
        max_in_flight=slots,
        frequency_penalty=_or(settings.frequency_penalty, EMBEDDED_FREQUENCY_PENALTY),
        presence_penalty=settings.presence_penalty,
        embedded=True,
        message_attempts=EMBEDDED_MESSAGE_ATTEMPTS,
        extra_body=dict(EMBEDDED_SAMPLING),
    )


# --------------------------------------------------------------------------- everything else


def provider_of(model: str) -> str:
    return split_model(model)[0]


def _key_in_environment(model: str) -> bool:
    """Whether a key for this model's provider is in the environment: OPENAI_API_KEY for the OpenAI
    wire format; for another provider's server (xinference/, a proxy), litellm's own name for its key
    (TOGETHERAI_API_KEY) or PROVIDER_API_KEY. litellm is asked only there: its transport calls it anyway."""
    provider = provider_of(model)
    if provider in OPENAI_COMPATIBLE:
        return bool(os.environ.get("OPENAI_API_KEY"))
    if os.environ.get(f"{provider.upper()}_API_KEY"):
        return True
    from sandbox.models.transports import _litellm

    try:
        key = _litellm().get_llm_provider(model=model)[2]
    except Exception:  # a provider litellm does not know: the call says so, in one line
        return False
    return bool(key) and key != "fake-api-key"  # litellm's stand-in for servers that need none


def _hosted(settings: ModelSettings) -> Profile:
    if settings.deployments:
        return _routed(settings)
    profile = _one_server(settings)
    if settings.fallbacks:
        endpoint = replace(profile.endpoint, fallbacks=_fallbacks(settings, profile.endpoint))
        profile = replace(profile, endpoint=endpoint)
    return profile


# --------------------------------------------------------------------------- many deployments of one model


def _routed(settings: ModelSettings) -> Profile:
    """A model several servers serve: each deployment resolved as a server of its own (its key, its
    structured-output default), the calls sent through litellm's Router over all of them."""
    servers = [
        RouterDeployment(
            replace(_one_server(_as_server(settings, d)).endpoint, model_id=settings.model),
            weight=d.weight,
            rpm=d.rpm,
            tpm=d.tpm,
        )
        for d in settings.deployments
    ]
    first = servers[0].endpoint
    model = settings.model if "/" in settings.model else first.model
    endpoint = Endpoint(
        model=model,
        structured=first.structured,
        model_id=settings.model,
        transport="router",
        deployments=tuple(servers),
    )
    endpoint = replace(endpoint, fallbacks=_fallbacks(settings, endpoint))
    return _hosted_profile(settings, endpoint)


def _as_server(settings: ModelSettings, deployment: Deployment) -> ModelSettings:
    """The settings of one deployment as if it were the model's only server."""
    model = deployment.model or settings.model
    if deployment.model and "/" not in model and "/" in settings.model:
        model = f"{provider_of(settings.model)}/{model}"  # Ollama's qwen2.5:7b, under the model's provider
    update = {"model": model, "api_base": deployment.api_base, "deployments": (), "fallbacks": ()}
    return settings.model_copy(update=update)


def _fallbacks(settings: ModelSettings, endpoint: Endpoint) -> tuple[Endpoint, ...]:
    """The fallbacks' endpoints. Each is sent the very request the model was (built for its structured
    form), so each must honour the same form."""
    endpoints = []
    for index, fallback in enumerate(settings.fallbacks):
        other = _fallback(settings, index, fallback).endpoint
        if other.structured != endpoint.structured:
            raise ProfileError(
                f"{settings.model}: fallback {index} ({fallback.model}) asks for structured output as "
                f"{other.structured}, the model as {endpoint.structured}: set the same structured: on both"
            )
        endpoints.append(other)
    return tuple(endpoints)


def each_server(profile: Profile) -> list[Profile]:
    """The profile once per server a call to it may reach: each deployment (as a plain endpoint), then
    each fallback's. What the preflight and ``sandbox models check`` test one request each."""
    if profile.embedded:
        return [profile]
    servers = [replace(profile, endpoint=d.endpoint) for d in profile.endpoint.deployments] or [
        replace(profile, endpoint=replace(profile.endpoint, fallbacks=()))
    ]
    for index, fallback in enumerate(profile.settings.fallbacks):
        servers.extend(each_server(_fallback(profile.settings, index, fallback)))
    return servers


def _fallback(settings: ModelSettings, index: int, fallback: ModelSettings) -> Profile:
    """A fallback is another server's model: the embedded one (on this machine's loopback, started for
    roles, not for fallbacks) and a person cannot be one."""
    if is_embedded(fallback) or is_person(fallback):
        raise ProfileError(f"{settings.model}: fallback {index} ({fallback.model}) must be a hosted or served model")
    return _hosted(fallback)


def _one_server(settings: ModelSettings) -> Profile:
    model = settings.model
    api_key = None
    if settings.api_base:
        if "/" not in model:
            model = f"openai/{model}"  # any OpenAI-compatible server
        own_key = SERVER_KEY_ENV.get(provider_of(model))
        if own_key is not None:  # never another provider's key (OPENAI_API_KEY) sent to the user's server
            api_key = os.environ.get(own_key) or PLACEHOLDER_KEY
        elif not _key_in_environment(model):
            # Most self-hosted servers need no key, but the OpenAI client refuses to start without one.
            api_key = PLACEHOLDER_KEY
        # vLLM, llama.cpp, SGLang and LM Studio turn a JSON schema into constrained decoding.
        default: StructuredMode = "json_schema"
    else:
        from sandbox.models.prices import litellm_supports_schema  # a hosted provider: litellm's table knows it

        default = "json_schema" if litellm_supports_schema(model) else "none"
    # OpenAI itself, or a server of the user's own that speaks its wire format: that format, without litellm.
    openai_wire = provider_of(model) in OPENAI_COMPATIBLE and (settings.api_base or provider_of(model) == "openai")
    if openai_wire and not settings.api_base and _reasoning(model):
        # OpenAI's reasoning models (o1, o3, gpt-5 ...) take max_completion_tokens and refuse some sampling
        # fields; litellm knows each model's rules, so they go through it.
        openai_wire = False
    endpoint = Endpoint(
        model=model,
        api_base=settings.api_base,
        api_key=api_key,
        structured=_structured(settings, default),
        model_id=settings.model,
        transport=_transport(settings, "openai" if openai_wire else "litellm"),
    )
    return _hosted_profile(settings, endpoint)


def _hosted_profile(settings: ModelSettings, endpoint: Endpoint) -> Profile:
    """What a hosted or self-hosted model can do, however many servers it has."""
    return Profile(
        settings=settings,
        endpoint=endpoint,
        turn_mode=_turn_mode(settings, "one-call"),
        evidence_mode=_evidence_mode(settings, "free"),
        judge_concurrency=HOSTED_JUDGE_CONCURRENCY,
        frequency_penalty=settings.frequency_penalty,
        presence_penalty=settings.presence_penalty,
    )


def _reasoning(model: str) -> bool:
    from sandbox.models.prices import model_info  # litellm's price table, read without importing litellm

    return bool((model_info(model) or {}).get("supports_reasoning"))


def _structured(settings: ModelSettings, default: StructuredMode) -> StructuredMode:
    return default if settings.structured == "auto" else settings.structured


def _transport(settings: ModelSettings, default: Transport) -> Transport:
    return default if settings.transport == "auto" else settings.transport


def _turn_mode(settings: ModelSettings, default: TurnMode) -> TurnMode:
    return default if settings.turn_mode == "auto" else settings.turn_mode


def _evidence_mode(settings: ModelSettings, default: EvidenceMode) -> EvidenceMode:
    return default if settings.evidence_mode == "auto" else settings.evidence_mode


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def resolve(
    settings: ModelSettings, embedded_api_base: str | None = None, embedded_slots: int = EMBEDDED_SLOTS
) -> Profile:
    """The profile of one role's model. The embedded model needs its server's address."""
    if is_embedded(settings):
        return _embedded(settings, embedded_api_base, embedded_slots)
    return _hosted(settings)


class Profiles:
    """Every model of a run, resolved once; looked up by the settings the episodes carry."""

    def __init__(
        self,
        settings: Iterable[ModelSettings],
        embedded_api_base: str | None = None,
        embedded_slots: int = EMBEDDED_SLOTS,
    ):
        self._by_settings: dict[ModelSettings, Profile] = {}
        self.embedded_api_base = embedded_api_base
        self.embedded_slots = embedded_slots
        for item in settings:
            self.get(item)

    def get(self, settings: ModelSettings) -> Profile:
        profile = self._by_settings.get(settings)
        if profile is None:
            profile = resolve(settings, self.embedded_api_base, self.embedded_slots)
            self._by_settings[settings] = profile
        return profile

    __getitem__ = get

    def all(self) -> list[Profile]:
        return list(self._by_settings.values())
