"""The one place that talks to models.

Every request goes through :func:`complete` (free text) or :func:`complete_structured` (JSON
validated against a pydantic model), so retries, cassettes, token and cost accounting and
structured output are handled once. Split by job: ``errors`` (what failed, and whether another
try can mend it), ``retry`` (the tenacity policy), ``call`` (the request, retried and recorded),
``transports`` (how it travels: the OpenAI wire format over aiohttp, or litellm for other providers), ``prices``
(litellm's price table, read without litellm), ``context`` (a run's cache, limits and counters,
wrapped around the call), ``structured``, and ``endpoint`` (plain data). Names are loaded on first
use (PEP 562), and litellm only when an endpoint's transport needs it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Before anything imports litellm, or its import fetches a price map over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_WHERE = {
    "ChatRequest": "call",
    "Completion": "call",
    "complete": "call",
    "litellm_knows_cost": "prices",
    "litellm_supports_schema": "prices",
    "Endpoint": "endpoint",
    "StructuredMode": "endpoint",
    "Transport": "endpoint",
    "CALL_CONTEXT": "context",
    "CallContext": "context",
    "CassetteMissError": "errors",
    "ConfigurationError": "errors",
    "configuration_problem": "errors",
    "EmptyResponseError": "errors",
    "ModelCallError": "errors",
    "StructuredOutputError": "errors",
    "cassette_miss_detail": "errors",
    "describe": "errors",
    "is_cassette_miss": "errors",
    "is_transient": "errors",
    "status_code_of": "errors",
    "retry_after_seconds": "retry",
    "retry_policy": "retry",
    "complete_structured": "structured",
    "json_schema_format": "structured",
    "parse_json_output": "structured",
    "schema_of": "structured",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sandbox.models.{module}"), name)
    globals()[name] = value
    return value
