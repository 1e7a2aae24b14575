"""Example dialogues for sales trainers: the best and worst episodes of each strategy, as Markdown.

A trainer wants a few dialogues to discuss, not a results table: for each strategy the episodes that
scored highest and lowest on a chosen column (the rubric mean, one criterion, or an outcome metric),
each with the reason it was picked, the dialogue, what the prospect was really hiding, and the judge's
verdicts with the quotes that were checked against the transcript. Picking is a pure function over
the results table, so it is tested apart from the files it writes.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal

import jinja2
import pandas as pd
from pydantic import BaseModel

from sandbox.amounts import money_text
from sandbox.judge import describe_outcome
from sandbox.metrics import OutcomeMetrics, faithfulness_findings
from sandbox.runfolder import RunFolder
from sandbox.schemas import EpisodeSpec, Judgement, Transcript
from sandbox.stats import episode_level
from sandbox.table import results_frame

TEMPLATES = Path(__file__).resolve().parent / "templates"


class ExamplesError(ValueError):
    """A request the run cannot answer (an unknown column, no finished episode)."""


class Pick(BaseModel):
    """One chosen episode and why it was chosen."""

    episode_id: str
    strategy: str
    rank: Literal["highest", "lowest"]
    by: str
    value: float
    why: str


def pick_examples(frame: pd.DataFrame, by: str = "score_mean", per_strategy: int = 1) -> list[Pick]:
    """The ``per_strategy`` highest and lowest finished episodes of each strategy on column ``by``.

    Episodes without a value are never picked; ties go to the lower episode id, so the same run
    always gives the same examples. A strategy with fewer than two scored episodes gets one pick.
    """
    episodes = episode_level(frame)
    if episodes.empty or "status" not in episodes:
        raise ExamplesError("the run has no finished episodes yet")
    episodes = episodes[episodes["status"] == "ok"]
    choices = sorted(
        c
        for c in episodes.columns
        if c.startswith(("score_", "m_")) and pd.to_numeric(episodes[c].dropna(), errors="coerce").notna().all()
    )  # numbers (or nothing yet): a status or a name cannot rank episodes
    if by not in choices:
        raise ExamplesError(f"unknown column '{by}'; choose one of: {', '.join(choices) or 'none (nothing judged)'}")
    picks: list[Pick] = []
    for strategy, group in episodes.groupby("strategy", sort=True):
        values = pd.to_numeric(group[by], errors="coerce")
        scored = group.assign(pick_value=values).dropna(subset=["pick_value"]).sort_values(["pick_value", "episode_id"])
        if scored.empty:
            continue
        n = min(per_strategy, max(1, len(scored) // 2))
        highest = scored.sort_values(["pick_value", "episode_id"], ascending=[False, True]).head(n)
        lowest = scored[~scored["episode_id"].isin(highest["episode_id"])].head(n)  # ties: another episode
        for rank, rows in (("highest", highest), ("lowest", lowest)):
            for position, row in enumerate(rows.itertuples(index=False), start=1):
                value = float(row.pick_value)
                place = "" if n == 1 else f" #{position}"
                why = f"{rank}{place} {by} of {len(scored)} {strategy} episodes ({value:.2f})"
                picks.append(
                    Pick(episode_id=row.episode_id, strategy=str(strategy), rank=rank, by=by, value=value, why=why)
                )
    if not picks:
        raise ExamplesError(f"no finished episode has a value for '{by}'")
    return picks


def dialogue_context(
    transcript: Transcript, judgements: list[Judgement], metrics: OutcomeMetrics | None, why: str
) -> dict[str, Any]:
    """What the template shows for one episode: evidence quotes are attached to the turns they cite."""
    cast = transcript.cast
    cited: dict[int, list[str]] = {}
    verdicts = []
    for judgement in judgements:
        for score in judgement.scores:
            quotes = [e for e in score.evidence if e.verified]
            for e in quotes:
                cited.setdefault(e.turn, []).append(f"{score.criterion} {score.score}")
            verdicts.append(
                {
                    "judge": judgement.judge_model,
                    "criterion": score.criterion,
                    "score": score.score,
                    "rationale": score.rationale,
                    "quotes": quotes,
                    "error": score.error,
                }
            )
    names = {"rep": cast.scenario.rep_name, "prospect": cast.prospect.display_name}
    money = functools.partial(money_text, cast.scenario)  # the scenario's format, cents kept (4.87 USD)
    turns = [
        {
            "index": t.index,
            "speaker": names[t.speaker],
            "role": t.speaker,
            "message": t.message.strip(),
            "action": t.action.kind.value,
            "price": money(t.action.price),
            "cited": cited.get(t.index, []),
            "notes": list(t.notes),
        }
        for t in transcript.turns
    ]
    return {
        "why": why,
        "transcript": transcript,
        "spec": transcript.spec,
        "cast": cast,
        "turns": turns,
        "verdicts": verdicts,
        "outcome_text": _outcome_text(transcript),
        "money": money,
        "findings": faithfulness_findings(transcript),
        "metrics": metrics,
        "embedded": played_by_embedded(transcript.spec),
    }


def played_by_embedded(spec: EpisodeSpec) -> bool:
    """The handouts warn when the tiny embedded model played a side: the format, not the selling."""
    from sandbox.profiles import is_embedded

    return is_embedded(spec.rep_model) or is_embedded(spec.prospect_model)


def _outcome_text(transcript: Transcript) -> str:
    outcome = transcript.outcome
    scenario = transcript.cast.scenario
    text = describe_outcome(outcome.status, outcome.price, outcome.decided_by, functools.partial(money_text, scenario))
    return f"{text} ({outcome.reason})" if outcome.reason and outcome.status.value == "failed" else text


def render_dialogue(
    transcript: Transcript, judgements: list[Judgement], metrics: OutcomeMetrics | None, why: str
) -> str:
    """One dialogue as a Markdown handout (shared by `sandbox examples` and `sandbox negotiate --handout`)."""
    context = dialogue_context(transcript, judgements, metrics, why)
    return _env().get_template("example.md.j2").render(**context)


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def file_name(pick: Pick) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{pick.strategy}-{pick.rank}-{pick.episode_id}".lower())
    return f"{slug}.md"


def write_examples(
    folder: RunFolder | Path | str, by: str = "score_mean", per_strategy: int = 1, out: Path | None = None
) -> tuple[Path, list[Pick]]:
    """Write one Markdown file per pick and an index (README.md) into ``out`` (default: run/examples)."""
    run = RunFolder.of(folder)
    picks = pick_examples(results_frame(run), by=by, per_strategy=per_strategy)
    results = {r.episode_id: r for r in run.latest(ids={p.episode_id for p in picks})}  # only the picks held
    if out is None:
        out = run.examples_dir
        for stale in out.glob("*.md"):  # our own folder: picks by another column must not linger
            stale.unlink()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for pick in picks:
        name = file_name(pick)
        result = results[pick.episode_id]
        assert result.transcript is not None  # picks come from finished episodes only
        text = render_dialogue(result.transcript, result.judgements, result.metrics, f"Picked as the {pick.why}.")
        (out / name).write_text(text, encoding="utf-8")
        index.append({"pick": pick, "file": name, "result": result})
    embedded = any(played_by_embedded(e["result"].spec) for e in index)
    template = _env().get_template("examples_index.md.j2")
    (out / "README.md").write_text(
        template.render(run=run.path.name, by=by, entries=index, embedded=embedded), encoding="utf-8"
    )
    return out, picks
