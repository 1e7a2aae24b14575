"""Does a model endpoint do what its profile claims? One tiny constrained request tells.

``sandbox models check`` prints the answer; it is the first thing to run against a new server, so a
researcher learns in two seconds that a vLLM endpoint honours JSON schemas (or that it does not,
and which setting to change) instead of after a night of episodes that all ended "returned invalid".
The preflight of a run or a negotiation (:mod:`sandbox.preflight`) sends the same request.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ValidationError

from sandbox.profiles import Profile


class CheckReply(BaseModel):
    """The check's schema: small enough for any model, strict enough that prose cannot pass."""

    status: Literal["ready"]
    count: int


CHECK_PROMPT = 'Reply with the JSON object {"status": "ready", "count": 3} and nothing else.'


class CheckResult(BaseModel):
    model: str
    api_base: str | None  # None for the embedded model: its server takes a new port every start
    reachable: bool
    structured: str  # the mode the profile uses
    structured_ok: bool | None = None  # the first answer validated without a repair (None: not reached)
    tokens_per_s: float | None = None
    latency_s: float | None = None
    cost_known: bool = False
    error: str | None = None
    answer: str | None = None  # the start of what the model said, when it did not validate

    @property
    def ok(self) -> bool:
        return self.reachable and bool(self.structured_ok)

    @property
    def where(self) -> str:
        return f"{self.model} at {self.api_base}" if self.api_base else self.model

    def problem(self) -> str | None:
        """One line naming the model, the endpoint and what to change; None when the check passed."""
        if not self.reachable:
            return self.error or f"{self.where}: no answer"
        if self.structured_ok:
            return None
        instead = "none" if self.structured != "none" else "json_schema"
        return (
            f"{self.where}: structured output ({self.structured}) not honoured (answered {self.answer!r}); "
            f"set structured: {instead} for this model, or check the server"
        )

    def snippet(self) -> str:
        """The spec lines that use this endpoint as checked."""
        lines = [f"model: {self.model}"]
        if self.api_base:
            lines.append(f"api_base: {self.api_base}")
        if self.structured_ok is False and self.structured == "json_schema":
            lines.append("structured: none  # the server ignored the schema: schema in the prompt instead")
        else:
            lines.append(f"structured: {self.structured}")
        return "\n".join(lines)


async def check_model(profile: Profile, timeout_s: float = 30.0, purpose: str = "check") -> CheckResult:
    """One request with the profile's own structured-output form; a failure becomes the result's error.
    ``purpose`` tells this request apart in logs and failures ("preflight" before a run)."""
    from sandbox.models import ModelCallError, complete, litellm_knows_cost
    from sandbox.models.structured import parse_json_output, response_format_for, schema_text

    endpoint = profile.endpoint
    messages = [{"role": "user", "content": CHECK_PROMPT}]
    if endpoint.structured != "json_schema":
        messages[0]["content"] += f"\nThe JSON schema: {schema_text(CheckReply)}"
    result = CheckResult(
        model=profile.model_id,
        api_base=None if profile.embedded else endpoint.api_base,
        reachable=False,
        structured=endpoint.structured,
        cost_known=litellm_knows_cost(endpoint.model),
    )
    started = time.perf_counter()
    try:
        completion = await complete(
            endpoint,
            messages,
            purpose=purpose,
            temperature=0.0,
            max_tokens=40,
            seed=1,
            timeout_s=timeout_s,
            response_format=response_format_for(endpoint, CheckReply),
        )
    except ModelCallError as exc:
        return result.model_copy(update={"error": exc.reason})
    latency = time.perf_counter() - started
    tokens = completion.call.tokens_out
    update: dict[str, object] = {
        "reachable": True,
        "latency_s": round(latency, 3),
        "tokens_per_s": round(tokens / latency, 1) if tokens and latency > 0 else None,
        "cost_known": result.cost_known or completion.call.cost_usd is not None,
    }
    try:
        parse_json_output(completion.text, CheckReply)
        update["structured_ok"] = True
    except (ValidationError, ValueError):
        update["structured_ok"] = False
        update["answer"] = " ".join(completion.text.split())[:80]
    return result.model_copy(update=update)
