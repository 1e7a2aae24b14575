"""Structured output: JSON validated against a pydantic model, in the form the endpoint honours.

The endpoint's ``structured`` mode (set once by its profile) decides how the schema travels:
``json_schema`` in ``response_format`` (llama.cpp, vLLM, SGLang and LM Studio turn it into a
grammar), ``json_object`` (JSON mode plus the schema in the prompt), or ``none`` (the schema in the
prompt only). Whatever the mode, the answer is validated here and repaired once.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sandbox.models.call import Endpoint, complete
from sandbox.models.errors import ModelCallError, StructuredOutputError
from sandbox.schemas import ModelCall

T = TypeVar("T", bound=BaseModel)


@functools.lru_cache(maxsize=256)
def schema_text(schema_model: type[BaseModel]) -> str:
    return json.dumps(schema_model.model_json_schema())


def schema_of(schema_model: type[BaseModel]) -> dict[str, Any]:
    """A fresh copy of the model's JSON schema: pydantic rebuilds it on every call (about 1 ms each
    turn, the largest cost of our own per call), and callers downstream may mutate what they get."""
    return json.loads(schema_text(schema_model))


def json_schema_format(schema_model: type[BaseModel], strict: bool = True) -> dict[str, Any]:
    """``response_format`` for a pydantic model.

    ``strict`` only where the server turns any schema into a grammar (llama.cpp): OpenAI's strict
    mode refuses schemas with optional fields or length limits, which pydantic models often have,
    so hosted providers get the schema as guidance and the output is validated (and repaired) here.
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema_model.__name__,
            "schema": schema_of(schema_model),
            "strict": strict,
        },
    }


def response_format_for(endpoint: Endpoint, schema_model: type[BaseModel]) -> dict[str, Any] | None:
    if endpoint.structured == "json_schema":
        return json_schema_format(schema_model, strict=endpoint.strict_schema)
    if endpoint.structured == "json_object":
        return {"type": "json_object"}
    return None


def parse_json_output(text: str, schema_model: type[T]) -> T:
    """Validate model output, tolerating code fences and prose around one JSON object."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`")
        if cleaned.lower().startswith("json"):
            cleaned = cleaned[4:]
    try:
        return schema_model.model_validate_json(cleaned)
    except ValidationError:
        start, end = cleaned.find("{"), cleaned.rfind("}")
        if start == -1 or end <= start:
            raise
        return schema_model.model_validate(json.loads(cleaned[start : end + 1]))


async def complete_structured(
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    schema_model: type[T],
    *,
    purpose: str,
    temperature: float = 0.0,
    max_tokens: int = 200,
    seed: int | None = None,
    timeout_s: float = 60.0,
) -> tuple[T, list[ModelCall]]:
    """Ask for JSON matching ``schema_model``; on invalid output, one repair, then fail."""
    conversation = list(messages)
    if endpoint.structured != "json_schema":
        instruction = f"Reply with one JSON object matching this schema, nothing else:\n{schema_text(schema_model)}"
        conversation = conversation + [{"role": "user", "content": instruction}]
    response_format = response_format_for(endpoint, schema_model)
    calls: list[ModelCall] = []
    last_problem = ""
    for attempt in range(2):
        try:
            completion = await complete(
                endpoint,
                conversation,
                purpose=purpose if attempt == 0 else f"{purpose}:repair",
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                timeout_s=timeout_s,
                response_format=response_format,
            )
        except ModelCallError as exc:
            # A repair that fails for good must not lose the first call: its tokens and retries were spent.
            exc.calls = calls + exc.calls
            raise
        calls.append(completion.call)
        try:
            return parse_json_output(completion.text, schema_model), calls
        except (ValidationError, ValueError) as exc:
            last_problem = " ".join(str(exc).split())[:200]
            completion.call.error = f"invalid output: {last_problem}"
            conversation = conversation + [
                {"role": "assistant", "content": completion.text},
                {
                    "role": "user",
                    "content": f"That was not valid ({last_problem}). Reply again with only the corrected JSON.",
                },
            ]
    raise StructuredOutputError(
        f"{endpoint.label} ({purpose}) returned invalid {schema_model.__name__} twice: {last_problem}", calls
    )
