"""Packs for sales trainers: dialogues to print and discuss, as one data model and one renderer.

A :class:`Pack` holds :class:`Panel` s. A panel shows an optional shared beginning once, full width
(``shared``: annotated turns), then its ``columns`` side by side, each a :class:`DialogueView` (its label,
turns marked with what they help or hurt, outcome, verified scores, debrief, the prospect's hidden brief).
One model serves every pack, so Markdown and HTML (``templates/pack.md.j2``, ``templates/pack.html.j2``)
are the only renderers:

- best and worst examples (``sandbox examples RUN``): a panel per strategy, its highest and lowest episode;
- contrast pairs (``sandbox examples RUN --contrast A B``): a panel per matched pair, no shared part, 2 columns;
- fresh examples (``sandbox examples --rep ...``): a panel per episode, one column;
- a branch (``sandbox branch``): one panel whose ``shared`` part is the replayed prefix, shown once, and
  whose columns are the continuations from the first turn played::

      k = results[0].transcript.prefix_turns              # every continuation shares these turns
      panel = Panel(
          title=f"From turn {k}", why="The same beginning, continued by ...",
          shared=shared_turns(results[0], rubric, upto=k),
          columns=[dialogue_view(r, rubric, f"{r.spec.strategy}, seed {r.spec.seed}", from_turn=k) for r in results],
      )
      write_pack(Pack(title="...", intro="...", panels=[panel]), out_dir, "branch", pdf=pdf)

  Shared turns carry no marks: the judges saw the shared beginning as context only and a quote from it
  does not count as evidence (:attr:`sandbox.judge.JudgeCase.judged_from`), so every mark and verdict in
  a column is about that column's own continuation.

**Marks.** A judge's *verified* evidence quote for a criterion marks the turn it quotes (the quote is
highlighted in the turn's text). The rubric scores 1 to 5 with anchors at levels 1, 3 and 5, so the mark
*helps* when that judge scored the criterion 4 or 5 (nearer the level-5 anchor than the level-3 one),
*hurts* at 1 or 2, and is *mixed* at 3 (the middle anchor). The debrief's word for a criterion's mean
over judges (:func:`effect_of_mean`) is *helps* above 3.5, *hurts* below 2.5, else *mixed*: a mean exactly
halfway (3 and 4, or 2 and 3) means the judges split across the middle anchor, so it is *mixed*.

**Verified only.** A score counts (in a dialogue's scores, its debrief, and in every pick of
:mod:`sandbox.examples`) only when it is supported, i.e. at least one of its quotes was found in the
turn it cites; :func:`verified_frame` is the results table with exactly those scores.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import jinja2
import pandas as pd
from pydantic import BaseModel, Field

from sandbox.amounts import money_text
from sandbox.judge import describe_outcome, normalise
from sandbox.metrics import OutcomeMetrics, faithfulness_findings
from sandbox.results import EpisodeResult
from sandbox.runfolder import RunFolder
from sandbox.schemas import EpisodeSpec, Judgement, Rubric, Speaker, Transcript

TEMPLATES = Path(__file__).resolve().parent / "templates"
HELPS_AT = 4  # this score and above: the quoted turn helps the criterion (rubric scale 1-5)
HURTS_AT = 2  # this score and below: it hurts; 3, the middle anchor, is mixed
Effect = Literal["helps", "mixed", "hurts"]


class PdfError(RuntimeError):
    """The PDF could not be printed (no Chromium, or Chromium failed); ``written`` lists what was."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


# --------------------------------------------------------------------------- the model


class Mark(BaseModel):
    """One judge's verified quote for one criterion, on the turn it quotes."""

    criterion: str
    name: str = Field(description="The criterion's name in the rubric (its id when the rubric lacks it).")
    judge: str
    score: int
    effect: Effect
    quote: str
    reason: str = Field(description="The judge's rationale for the score.")


class Segment(BaseModel):
    """A piece of a turn's text; ``marked`` pieces are evidence quotes (highlighted)."""

    text: str
    marked: bool = False
    title: str = ""


class TurnView(BaseModel):
    index: int
    speaker: str = Field(description="The speaker's name in the dialogue.")
    role: Speaker
    message: str
    segments: list[Segment]
    action: str
    price: str | None = None
    marks: list[Mark] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def cited(self) -> list[str]:
        """'criterion score' per mark, as the handouts have always listed a turn's citations."""
        return [f"{m.criterion} {m.score}" for m in self.marks]


class Verdict(BaseModel):
    """One judge's verdict on one criterion, as recorded: unsupported and failed ones too."""

    criterion: str
    judge: str
    score: int | None
    supported: bool
    rationale: str
    quotes: list[tuple[int, str]] = Field(description="(turn, quote) of the verified quotes.")
    error: str | None = None


class ScoreLine(BaseModel):
    """A criterion's score in one dialogue: the mean over judges with a supported score, or why none."""

    criterion: str
    name: str
    score: float | None
    judges: int
    note: str | None = None


class Fact(BaseModel):
    label: str
    value: str


class HiddenBrief(BaseModel):
    """What the prospect kept private (and the rep's floor), revealed after the dialogue."""

    prospect: str
    real_need: str
    budget: str
    walk_away: str
    alternatives: list[str]
    wins_them_over: str
    shuts_them_down: str
    rep_floor: str


class DialogueView(BaseModel):
    """One dialogue (or its continuation from ``from_turn``), ready to render."""

    label: str
    title: str
    why: str = ""
    episode_id: str
    strategy: str
    facts: list[Fact]
    from_turn: int = 0
    turns: list[TurnView]
    outcome: str
    scores: list[ScoreLine]
    score_mean: float | None
    verdicts: list[Verdict]
    debrief: str
    brief: HiddenBrief
    strategy_sources: str
    embedded: bool
    discuss: list[str]


class Panel(BaseModel):
    """A shared beginning shown once (optional), then dialogues side by side."""

    title: str
    why: str = ""
    shared: list[TurnView] = Field(default_factory=list)
    columns: list[DialogueView] = Field(min_length=1)


class Pack(BaseModel):
    title: str
    intro: str = ""
    panels: list[Panel]

    @property
    def embedded(self) -> bool:
        return any(c.embedded for p in self.panels for c in p.columns)

    @property
    def side_by_side(self) -> bool:
        return any(len(p.columns) > 1 for p in self.panels)


# --------------------------------------------------------------------------- verified scores


def supported_scores(judgement: Judgement) -> dict[str, int]:
    """The judge's scores that count: those with at least one verified quote."""
    return {s.criterion: s.score for s in judgement.scores if s.score is not None and s.supported}


def verified_rows(result: EpisodeResult) -> list[dict[str, object]]:
    """The table's rows for one result (:func:`sandbox.table.rows`), with ``score_*`` columns holding
    supported scores only: an unsupported score is missing, not a number."""
    from sandbox.table import rows

    out = rows(result)
    for row, judgement in zip(out, result.judgements, strict=False):  # one row per judgement, in order
        scored = supported_scores(judgement)
        for score in judgement.scores:
            row[f"score_{score.criterion}"] = scored.get(score.criterion)
        row["score_mean"] = sum(scored.values()) / len(scored) if scored else None
    return out


def verified_frame(folder: RunFolder | Path | str) -> pd.DataFrame:
    """The results table (latest line per episode) with verified scores only: what packs pick from."""
    from sandbox.table import frame

    return frame(row for result in RunFolder.of(folder).latest() for row in verified_rows(result))


# --------------------------------------------------------------------------- building views


def effect_of(score: int) -> Effect:
    return "helps" if score >= HELPS_AT else "hurts" if score <= HURTS_AT else "mixed"


def effect_of_mean(mean: float) -> Effect:
    """The effect of a mean over judges: past halfway to a helping (hurting) level, else mixed; a mean exactly
    halfway (2.5, 3.5) is a split across the middle anchor, so mixed (not ``round()``'s ties to the even level)."""
    return "helps" if mean > HELPS_AT - 0.5 else "hurts" if mean < HURTS_AT + 0.5 else "mixed"


def find_span(quote: str, text: str) -> tuple[int, int] | None:
    """Where a quote sits in the text, whitespace-insensitively (as :func:`sandbox.judge.verify_quote`
    checks it), or None."""
    words = normalise(quote.strip().strip("\"'“”‘’")).split()
    if not words:
        return None
    found = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return found.span() if found else None


def segments(text: str, marks: Sequence[Mark]) -> list[Segment]:
    """The text cut into plain and marked pieces; overlapping quotes merge into one marked piece."""
    spans: list[tuple[int, int, list[str]]] = []
    for mark in marks:
        span = find_span(mark.quote, text)
        if span is None:
            continue
        label = f"{mark.name} {mark.score} ({mark.effect}, {mark.judge})"
        spans.append((span[0], span[1], [label]))
    spans.sort()
    merged: list[tuple[int, int, list[str]]] = []
    for start, end, labels in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2] + [x for x in labels if x not in last[2]])
        else:
            merged.append((start, end, labels))
    out: list[Segment] = []
    at = 0
    for start, end, labels in merged:
        if start > at:
            out.append(Segment(text=text[at:start]))
        out.append(Segment(text=text[start:end], marked=True, title="; ".join(labels)))
        at = end
    if at < len(text) or not out:
        out.append(Segment(text=text[at:]))
    return out


def _name(rubric: Rubric | None, criterion: str) -> str:
    if rubric is None:
        return criterion
    try:
        return rubric.criterion(criterion).name
    except KeyError:
        return criterion


def turn_views(
    transcript: Transcript,
    judgements: Sequence[Judgement],
    rubric: Rubric | None,
    start: int = 0,
    stop: int | None = None,
    marked: bool = True,
) -> list[TurnView]:
    """The turns ``start`` to ``stop``, each with the marks of the verified quotes on it (``marked``)."""
    cast = transcript.cast
    names = {"rep": cast.scenario.rep_name, "prospect": cast.prospect.display_name}
    marks: dict[int, list[Mark]] = {}
    if marked:
        for judgement in judgements:
            for score in judgement.scores:
                if score.score is None:
                    continue
                for e in score.evidence:
                    if e.verified:
                        mark = Mark(criterion=score.criterion, name=_name(rubric, score.criterion),
                                    judge=judgement.judge_model, score=score.score, effect=effect_of(score.score),
                                    quote=e.quote, reason=" ".join(score.rationale.split()))  # fmt: skip
                        marks.setdefault(e.turn, []).append(mark)
    views = []
    for t in transcript.turns[start:stop]:
        message = t.message.strip()
        own = marks.get(t.index, [])
        views.append(
            TurnView(index=t.index, speaker=names[t.speaker], role=t.speaker, message=message,
                     segments=segments(message, own), action=t.action.kind.value,
                     price=money_text(cast.scenario, t.action.price), marks=own, notes=list(t.notes))
        )  # fmt: skip
    return views


def shared_turns(result: EpisodeResult, rubric: Rubric | None, upto: int) -> list[TurnView]:
    """The first ``upto`` turns of a dialogue, unmarked: the shared beginning of a branch panel."""
    if result.transcript is None:
        raise ValueError(f"episode {result.episode_id} has no transcript")
    return turn_views(result.transcript, [], rubric, 0, upto, marked=False)


def score_lines(judgements: Sequence[Judgement], rubric: Rubric | None) -> tuple[list[ScoreLine], float | None]:
    """Per criterion (rubric order, then any other), the mean of the supported scores; and their mean."""
    order = [c.id for c in rubric.criteria] if rubric is not None else []
    seen = [s.criterion for j in judgements for s in j.scores]
    lines = []
    for criterion in dict.fromkeys(order + seen):
        if criterion not in seen:
            continue
        counted = [supported_scores(j)[criterion] for j in judgements if criterion in supported_scores(j)]
        note = None
        if not counted:
            recorded = [s for j in judgements for s in j.scores if s.criterion == criterion]
            errors = [s.error for s in recorded if s.error]
            note = f"failed: {errors[0]}" if errors else "not counted: no verified evidence"
        score = sum(counted) / len(counted) if counted else None
        lines.append(ScoreLine(criterion=criterion, name=_name(rubric, criterion), score=score, judges=len(counted),
                               note=note))  # fmt: skip
    scored = [line.score for line in lines if line.score is not None]
    return lines, (sum(scored) / len(scored) if scored else None)


def debrief(lines: Sequence[ScoreLine], rubric: Rubric | None, strategy: str) -> str:
    """One paragraph: the counted criteria grouped by the seed document (title, author) each comes from,
    with their scores, so a trainer can send a rep to the source behind each verdict."""
    counted = [line for line in lines if line.score is not None]
    if not counted:
        return f"No criterion has a score with verified evidence, so this {strategy} dialogue has no debrief."
    by_source: dict[tuple[str, str], list[str]] = {}
    unsourced = []
    for line in counted:
        verdict = f"{line.name} {line.score:.1f} ({effect_of_mean(line.score)})"
        try:
            sources = rubric.criterion(line.criterion).sources if rubric is not None else []
        except KeyError:
            sources = []
        for source in sources:
            by_source.setdefault((source.title, source.author), []).append(verdict)
        if not sources:
            unsourced.append(verdict)
    parts = [f"“{title}” ({author}): {', '.join(verdicts)}" for (title, author), verdicts in by_source.items()]
    if unsourced:
        parts.append(f"no seed document named in the rubric: {', '.join(unsourced)}")
    text = "Where the judge's criteria come from, with this dialogue's scores. " + "; ".join(parts) + "."
    missing = [line.name for line in lines if line.score is None]
    if missing:
        text += f" Not counted (no verified evidence or no score): {', '.join(missing)}."
    return text


def played_by_embedded(spec: EpisodeSpec) -> bool:
    """The handouts warn when the tiny embedded model played a side: the format, not the selling."""
    from sandbox.profiles import is_embedded

    return is_embedded(spec.rep_model) or is_embedded(spec.prospect_model)


def outcome_text(transcript: Transcript) -> str:
    outcome = transcript.outcome
    scenario = transcript.cast.scenario
    text = describe_outcome(outcome.status, outcome.price, outcome.decided_by, functools.partial(money_text, scenario))
    return f"{text} ({outcome.reason})" if outcome.reason and outcome.status.value == "failed" else text


def _facts(transcript: Transcript, metrics: OutcomeMetrics | None, outcome: str) -> list[Fact]:
    cast, spec = transcript.cast, transcript.spec
    money = functools.partial(money_text, cast.scenario)
    findings = faithfulness_findings(transcript)
    facts = [
        Fact(label="Strategy", value=f"{cast.strategy.name}: {cast.strategy.summary.strip()}"),
        Fact(label="Prospect", value=f"{cast.prospect.display_name}: {cast.prospect.public_profile.strip()}"),
        Fact(label="Product", value=cast.scenario.product.strip()),
        Fact(label="Seller, list price",
             value=f"{cast.scenario.seller}, {money(cast.scenario.list_price)} {cast.scenario.price_unit}"),
        Fact(label="Outcome", value=outcome),
        Fact(label="Faithfulness", value="; ".join(findings) if findings else "no violation"),
    ]  # fmt: skip
    if metrics is not None:
        discount = metrics.discount_from_list
        share = metrics.rep_talk_share
        facts.append(Fact(label="Discount from list", value=f"{discount * 100:.1f} %" if discount is not None else "-"))
        talk = f"{share * 100:.0f} %" if share is not None else "-"
        facts.append(Fact(label="Rep talk share, questions", value=f"{talk}, {metrics.rep_questions} questions"))
    facts.append(
        Fact(label="Episode", value=f"`{transcript.episode_id}`: {spec.prospect} / {spec.scenario}, seed {spec.seed}, "
             f"{spec.opener} opens; rep model {spec.rep_model.model}, prospect model {spec.prospect_model.model}")
    )  # fmt: skip
    return facts


def _brief(transcript: Transcript) -> HiddenBrief:
    cast = transcript.cast
    money = functools.partial(money_text, cast.scenario)
    private = cast.prospect.private
    return HiddenBrief(
        prospect=cast.prospect.display_name,
        real_need=private.real_need.strip(),
        budget=money(cast.brief.budget) or "-",
        walk_away=money(cast.brief.walk_away_price) or "-",
        alternatives=list(private.alternatives),
        wins_them_over=private.wins_them_over.strip(),
        shuts_them_down=private.shuts_them_down.strip(),
        rep_floor=money(cast.scenario.rep_private.floor_price) or "-",
    )


def transcript_view(
    transcript: Transcript,
    judgements: Sequence[Judgement],
    metrics: OutcomeMetrics | None,
    rubric: Rubric | None,
    label: str,
    why: str = "",
    from_turn: int = 0,
) -> DialogueView:
    """One dialogue as the packs show it, from its parts (a handout needs no run folder)."""
    cast = transcript.cast
    outcome = outcome_text(transcript)
    lines, mean = score_lines(judgements, rubric)
    verdicts = [
        Verdict(criterion=s.criterion, judge=j.judge_model, score=s.score, supported=s.supported,
                rationale=" ".join(s.rationale.split()), quotes=[(e.turn, e.quote) for e in s.evidence if e.verified],
                error=s.error)
        for j in judgements
        for s in j.scores
    ]  # fmt: skip
    name = cast.prospect.display_name
    return DialogueView(
        label=label,
        title=f"{cast.strategy.name} meets {name} ({cast.prospect.name})",
        why=why,
        episode_id=transcript.episode_id,
        strategy=cast.strategy.id,
        facts=_facts(transcript, metrics, outcome),
        from_turn=from_turn,
        turns=turn_views(transcript, judgements, rubric, start=from_turn),
        outcome=outcome,
        scores=lines,
        score_mean=mean,
        verdicts=verdicts,
        debrief=debrief(lines, rubric, cast.strategy.id),
        brief=_brief(transcript),
        strategy_sources="; ".join(f"{s.title} ({s.author})" for s in cast.strategy.sources),
        embedded=played_by_embedded(transcript.spec),
        discuss=[
            f"Where did the rep learn (or miss) what {name} really needed?",
            "When price came up, did the rep defend value, concede, or walk the prospect back to the problem?",
            "Who did more of the work toward the decision, the rep or the prospect?",
        ],
    )


def dialogue_view(
    result: EpisodeResult, rubric: Rubric | None, label: str, from_turn: int = 0, why: str = ""
) -> DialogueView:
    """One episode of a run folder as a pack column; ``from_turn`` starts it after a shared beginning."""
    if result.transcript is None:
        raise ValueError(f"episode {result.episode_id} has no transcript ({result.error or 'failed'})")
    return transcript_view(result.transcript, result.judgements, result.metrics, rubric, label, why, from_turn)


# --------------------------------------------------------------------------- rendering


@functools.cache
def template_env(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["score"] = lambda v: "-" if v is None else f"{v:.2f}"
    return env


def render_markdown(pack: Pack) -> str:
    return template_env(False).get_template("pack.md.j2").render(pack=pack)


def render_dialogue_markdown(view: DialogueView) -> str:
    """One dialogue alone, as a Markdown handout (``sandbox negotiate --handout``, the examples' files)."""
    return template_env(False).get_template("pack_dialogue.md.j2").render(dialogue=view, level=1)


def render_html(pack: Pack) -> str:
    """One self-contained page: inline CSS, no script, no font or image fetched; every text escaped."""
    return template_env(True).get_template("pack.html.j2").render(pack=pack)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def print_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120) -> Path:
    """The page printed by headless Chromium (its @media print and @page rules apply)."""
    from sandbox.report import CHROMIUM_ARGS

    binary = chromium()
    if binary is None:
        raise RuntimeError("no Chromium found, so no PDF (install it, Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="sandbox-pdf-") as profile:  # its own profile: no lock clash
        command = [binary, "--headless", *CHROMIUM_ARGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
                   f"--print-to-pdf={pdf_path.resolve()}", html_path.resolve().as_uri()]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or not pdf_path.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"Chromium could not print {html_path} to PDF (exit {done.returncode}): {last}")
    return pdf_path


def write_pack(pack: Pack, out_dir: Path, stem: str, pdf: bool = False) -> list[Path]:
    """``stem.md`` and ``stem.html`` in ``out_dir`` (and ``stem.pdf`` with ``pdf``); the paths written.
    A PDF that cannot be printed raises :class:`PdfError` after the Markdown and HTML are written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    md.write_text(render_markdown(pack), encoding="utf-8")
    page.write_text(render_html(pack), encoding="utf-8")
    written = [md, page]
    if pdf:
        try:
            written.append(print_pdf(page, out_dir / f"{stem}.pdf"))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            raise PdfError(str(exc), written) from None
    return written
