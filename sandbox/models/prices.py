"""What litellm knows of a model (its price, whether it takes a JSON schema), read from the price table
litellm ships in its wheel, without importing litellm (seconds) or reaching the network.

The table (``model_prices_and_context_window_backup.json``, about 3.5 MB) is found with
``importlib.util.find_spec`` and read once per process, on the first question asked. Keys are a bare
name (``gpt-4o-mini``, its ``litellm_provider`` saying whose) or ``provider/name``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from sandbox.models.endpoint import split_model

TABLE_FILE = "model_prices_and_context_window_backup.json"
# Providers litellm counts as taking a response schema for any model (litellm.utils.supports_response_schema).
SCHEMA_FOR_ANY_MODEL = {"predibase", "fireworks_ai", "lm_studio", "nebius", "databricks"}


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """litellm's table, or nothing if litellm is not installed (then no model's price is known)."""
    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / TABLE_FILE
        if path.is_file():
            return json.loads(path.read_bytes())
    return {}


@functools.lru_cache(maxsize=256)
def model_info(model: str) -> dict[str, Any] | None:
    """The table's entry for ``provider/name`` (or a bare name): the key as written, else the bare name
    where the table says it belongs to that provider."""
    table = price_table()
    entry = table.get(model)
    if isinstance(entry, dict) and model != "sample_spec":
        return entry
    provider, name = split_model(model)
    entry = table.get(name) if provider else None
    if isinstance(entry, dict) and entry.get("litellm_provider") == provider:
        return entry
    return None


@functools.lru_cache(maxsize=256)
def litellm_knows_cost(model: str) -> bool:
    """Whether litellm's price table has the model, so a run's cost can be counted."""
    info = model_info(model) or {}
    return bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))


@functools.lru_cache(maxsize=256)
def litellm_supports_schema(model: str) -> bool:
    """litellm's own record of whether a hosted model takes a JSON schema in ``response_format``."""
    if split_model(model)[0] in SCHEMA_FOR_ANY_MODEL:
        return True
    return bool((model_info(model) or {}).get("supports_response_schema"))


def cost_usd(model: str, usage: Any) -> float | None:
    """A response's cost from its usage and the table's per-token prices (cached prompt tokens at the
    cache-read price where the table has one), as litellm counts a chat completion; None if unknown."""
    info = model_info(model)
    if info is None or usage is None:
        return None
    price_in = float(info.get("input_cost_per_token") or 0.0)
    price_out = float(info.get("output_cost_per_token") or 0.0)
    if not (price_in or price_out):
        return None
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = min(prompt, int(getattr(details, "cached_tokens", 0) or 0)) if details is not None else 0
    price_cached = float(info.get("cache_read_input_token_cost") or price_in)
    cost = (prompt - cached) * price_in + cached * price_cached + completion * price_out
    return cost if cost > 0 else None
