"""Dialogues as chat-format JSONL (``sandbox export RUN --format chat``): one dialogue a line, for
trainers who build their own role-play bots and researchers who fine-tune on good dialogues.

Each line is ``{"messages": [...], "metadata": {...}}``, from the chosen side's seat (``side``):

- ``system``: that side's system prompt as the engine builds it for its first turn
  (:func:`sandbox.engine.turn_request` with no turn said and no offer standing, so its state line
  reads "Standing offers: yours none; theirs none."). It is built by :func:`sandbox.prompts.system_prompt_for`,
  so it holds that side's own private brief and never the other side's.
- Then the turns in order: the chosen side's as ``assistant``, the other side's as ``user``. When the
  chosen side spoke first, the engine's opener cue (:func:`sandbox.engine.opener_cue`, the line the
  engine showed it) comes first as a ``user`` message, so roles alternate strictly after the system
  message. A replayed prefix (a branch) is part of the dialogue and is exported with it.
- Nothing is merged or dropped within a dialogue: the engine alternates speakers, so two turns of one
  side in a row never occur; a transcript where they do is skipped whole (counted as
  ``not alternating``), never merged. The last message may be the other side's (``user``).
- ``metadata``: the table's axes (:func:`sandbox.table.axes`: run, episode id, strategy, prospect,
  scenario, seed, opener, models), the side,
  the outcome, the number of turns, and the verified scores: each criterion's mean over the judges whose
  score is supported (:mod:`sandbox.packs`) and their mean, ``score_mean``.

Failed episodes are never exported, nor a side a person played (a practice session,
:data:`sandbox.practice.session.HUMAN_MODEL` as that side's model; counted as ``played by a person``):
its system prompt would be the practice module's placeholder strategy, not an agent's, and a trainer
fine-tuning an agent wants an agent's prompt. The agent's side of the same session is exported.

``min_score`` keeps the episodes whose ``score_mean`` is at least that; an episode with no verified
score has none and is then left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.engine import opener_cue, standing_offers, turn_request
from sandbox.packs import score_lines
from sandbox.practice.session import HUMAN_MODEL
from sandbox.results import EpisodeResult
from sandbox.runfolder import RunFolder
from sandbox.schemas import Speaker
from sandbox.table import axes


class NotAlternatingError(ValueError):
    """A transcript in which one side speaks twice in a row: exported as is, it would break alternation."""


@dataclass
class ChatExport:
    """What an export wrote and what it left out, by reason."""

    path: Path
    lines: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def chat_messages(result: EpisodeResult, side: Speaker) -> list[dict[str, str]]:
    """The dialogue from ``side``'s seat: system, then strictly alternating user/assistant messages."""
    transcript = result.transcript
    if transcript is None:
        raise ValueError(f"episode {result.episode_id} has no transcript")
    cast = transcript.cast
    start = turn_request(transcript.spec, cast, [], side, standing_offers([], cast.scenario))
    messages = [{"role": "system", "content": start.system_prompt}]
    turns = transcript.turns
    if turns and turns[0].speaker == side:
        names: dict[Speaker, str] = {"rep": cast.scenario.rep_name, "prospect": cast.prospect.display_name}
        messages.append({"role": "user", "content": opener_cue(side, names, cast.scenario.seller)})
    for previous, turn in zip([None, *turns], turns, strict=False):
        if previous is not None and previous.speaker == turn.speaker:
            raise NotAlternatingError(f"turns {previous.index} and {turn.index} are both the {turn.speaker}'s")
        messages.append({"role": "assistant" if turn.speaker == side else "user", "content": turn.message})
    return messages


def chat_metadata(result: EpisodeResult, side: Speaker) -> dict[str, Any]:
    outcome = result.transcript.outcome if result.transcript is not None else None
    lines, mean = score_lines(result.judgements, None)
    return {
        **axes(result),
        "side": side,
        "outcome": outcome.status.value if outcome is not None else None,
        "price": outcome.price if outcome is not None else None,
        "turns": len(result.transcript.turns) if result.transcript is not None else 0,
        "prefix_turns": result.transcript.prefix_turns if result.transcript is not None else 0,
        "judges": sorted({j.judge_model for j in result.judgements}),
        "score_mean": mean,
        "scores": {line.criterion: line.score for line in lines if line.score is not None},
    }


def played_by_person(result: EpisodeResult, side: Speaker) -> bool:
    """Whether a person typed ``side``'s turns (a practice session): its prompt is a placeholder, not an agent's."""
    spec = result.spec
    return (spec.rep_model if side == "rep" else spec.prospect_model) == HUMAN_MODEL


def chat_records(
    results: Iterable[EpisodeResult], side: Speaker, min_score: float | None, skipped: Counter[str]
) -> Iterator[dict[str, Any]]:
    """One record per finished episode that passes ``min_score``; every other one counted in ``skipped``."""
    for result in results:
        if result.status != "ok" or result.transcript is None:
            skipped["failed"] += 1
            continue
        if played_by_person(result, side):
            skipped["played by a person"] += 1
            continue
        metadata = chat_metadata(result, side)
        if min_score is not None and (metadata["score_mean"] is None or metadata["score_mean"] < min_score):
            skipped["below min-score" if metadata["score_mean"] is not None else "no verified score"] += 1
            continue
        try:
            messages = chat_messages(result, side)
        except NotAlternatingError:
            skipped["not alternating"] += 1
            continue
        yield {"messages": messages, "metadata": metadata}


def export_chat(
    folder: RunFolder | Path | str, side: Speaker = "rep", min_score: float | None = None, out: Path | None = None
) -> ChatExport:
    """Write the run's dialogues as chat JSONL (default: RUN/chat-<side>.jsonl), streamed one at a time."""
    run = RunFolder.of(folder)
    target = Path(out) if out is not None else run.path / f"chat-{side}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    summary = ChatExport(path=target)
    with target.open("w", encoding="utf-8") as handle:
        for record in chat_records(run.latest(), side, min_score, summary.skipped):
            handle.write(json.dumps(record) + "\n")  # ASCII: no U+2028 a line reader would split on
            summary.lines += 1
    return summary
