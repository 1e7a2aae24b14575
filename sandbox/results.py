"""What an experiment writes per episode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from sandbox.metrics import OutcomeMetrics, outcome_metrics
from sandbox.schemas import EpisodeSpec, Judgement, ModelCall, Transcript


class EpisodeResult(BaseModel):
    """One finished episode: outcome metrics and judgements together, or the reason it failed."""

    run_id: str
    episode_id: str
    spec: EpisodeSpec
    status: Literal["ok", "failed"]
    error: str | None = None
    transcript: Transcript | None = None
    metrics: OutcomeMetrics | None = None
    judgements: list[Judgement] = Field(default_factory=list)
    cost_usd: float = 0.0
    tokens: int = 0
    model_calls: int = 0
    cached_calls: int = 0
    wall_time_s: float = 0.0
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def calls(self) -> list[ModelCall]:
        """Every model call of the episode: its turns, then its judging."""
        turns = self.transcript.calls if self.transcript is not None else []
        return turns + [c for j in self.judgements for c in j.calls]

    def measured(self) -> OutcomeMetrics | None:
        """The outcome metrics, measured again from the transcript where they were recorded before a
        metric existed (the metrics are a pure function of the transcript, so nothing else changes)."""
        if self.metrics is not None and self.transcript is not None and self.metrics.unstated_offers is None:
            return outcome_metrics(self.transcript)
        return self.metrics

    @property
    def retries(self) -> int:
        """Requests re-sent after a transient failure, turns and judging together."""
        return sum(max(c.attempts - 1, 0) for c in self.calls)
