"""Where a model is and what form of structured output it honours: plain data, no client imported,
so the profiles (and the commands that only read runs) do not pay for litellm's import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StructuredMode = Literal["json_schema", "json_object", "none"]


@dataclass(frozen=True)
class Endpoint:
    """How to reach one model: the routed name litellm takes, where the server is, and the form of
    structured output it honours. Built by :func:`sandbox.profiles.resolve`, never per call."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    structured: StructuredMode = "none"
    strict_schema: bool = False  # only where the server turns any schema into a grammar (llama.cpp)
    model_id: str = ""  # the id the user wrote ("local", "openai/gpt-4o-mini"): the key for rate limits

    @property
    def label(self) -> str:
        return self.model
