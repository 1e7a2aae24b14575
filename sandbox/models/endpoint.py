"""Where a model is and what form of structured output it honours: plain data, no client imported,
so the profiles (and the commands that only read runs) do not pay for litellm's import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StructuredMode = Literal["json_schema", "json_object", "none"]
# How requests travel: the OpenAI wire format over aiohttp (OpenAI itself and every server that speaks its
# wire format: the embedded llama.cpp, vLLM, Ollama's /v1, LM Studio, SGLang), or litellm (every other
# provider; imported only when an endpoint needs it, since its import alone takes seconds), or litellm's
# Router (a model served by several deployments: it spreads the calls and sets a failing one aside).
Transport = Literal["openai", "litellm", "router"]


# The keyword arguments that say where a request goes (which model, which server, which key): set from
# the endpoint for each attempt, never part of what shapes the answer.
ADDRESS_FIELDS = frozenset({"model", "api_base", "api_key"})


def split_model(model: str) -> tuple[str, str]:
    """litellm's routed name ``provider/name`` as (provider, name); a bare name has no provider."""
    provider, _, name = model.partition("/")
    return (provider, name) if name else ("", model)


@dataclass(frozen=True)
class Endpoint:
    """How to reach one model: the routed name (litellm's form, ``provider/name``: also the label and
    the cache key's model, whatever the transport), where the server is, the form of structured output
    it honours and the transport. Built by :func:`sandbox.profiles.resolve`, never per call."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    structured: StructuredMode = "none"
    strict_schema: bool = False  # only where the server turns any schema into a grammar (llama.cpp)
    model_id: str = ""  # the id the user wrote ("local", "openai/gpt-4o-mini"): the key for rate limits
    transport: Transport = "litellm"
    priced: bool = True  # False where no price can exist (the embedded model): the price table is not read
    # transport "router": the servers of the model (each a plain endpoint with its own api_base), and
    # the other models asked once none of them is left to try in a call (see sandbox.models.call).
    deployments: tuple[RouterDeployment, ...] = ()
    fallbacks: tuple[Endpoint, ...] = ()

    @property
    def label(self) -> str:
        return self.model


@dataclass(frozen=True)
class RouterDeployment:
    """One server of a model served by several: where it is (a plain endpoint) and what the Router is
    told of it (its share of the calls, its limits)."""

    endpoint: Endpoint
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
