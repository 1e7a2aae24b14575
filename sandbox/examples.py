"""Example dialogues for sales trainers: which episodes to show, and the packs that show them.

A trainer wants a few dialogues to discuss, not a results table. Three kinds of pick, each a pure
function over the results table (so they are tested apart from the files written):

- :func:`pick_examples`: each strategy's highest and lowest episodes on a column;
- :func:`pick_contrasts`: matched pairs of two strategies (same prospect, scenario, seed, opener and
  models: :func:`sandbox.stats.matched_pairs`, the pairing of the paired tests) where they differ most;
- fresh examples: :func:`fresh_spec` writes the experiment a trainer would otherwise write by hand.

Where the files go, inside a run's ``examples/`` folder (:attr:`sandbox.runfolder.RunFolder.examples_dir`):
best and worst picks at the top (one ``<strategy>-highest|lowest-<episode>.md`` per pick, ``README.md``,
``pack.*``), contrast packs in ``contrast/``, the fresh-examples pack in ``fresh/``, and a branch's pack
(written by ``sandbox branch``) beside them. Picking again by another column removes the previous pick
files only (:func:`stale_pick_files`), never another command's pack.

Picks rank on :func:`sandbox.packs.verified_frame`: a score whose evidence was not verified does not
count. The pack model and its renderers live in :mod:`sandbox.packs`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

from sandbox.experiment import ExperimentSpec, RoleModels
from sandbox.metrics import OutcomeMetrics
from sandbox.packs import (
    Pack,
    Panel,
    dialogue_view,
    played_by_embedded,
    render_dialogue_markdown,
    template_env,
    transcript_view,
    verified_frame,
    write_pack,
)
from sandbox.runfolder import RunFolder
from sandbox.schemas import Judgement, ModelSettings, Rubric, Transcript
from sandbox.stats import MATCH_KEYS, episode_level, matched_pairs

__all__ = [
    "ContrastPair",
    "ExamplesError",
    "Pick",
    "check_by",
    "fresh_spec",
    "pick_contrasts",
    "pick_examples",
    "played_by_embedded",
    "render_dialogue",
    "write_contrast",
    "write_examples",
    "write_fresh",
]


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


class ContrastPair(BaseModel):
    """Two matched episodes of two strategies and how far apart they are on ``by``."""

    a_episode_id: str
    b_episode_id: str
    strategy_a: str
    strategy_b: str
    by: str
    a_value: float
    b_value: float
    match: dict[str, Any]

    @property
    def difference(self) -> float:
        return self.a_value - self.b_value

    @property
    def why(self) -> str:
        m = self.match
        return (
            f"{m.get('prospect')} / {m.get('scenario')}, seed {m.get('seed')}, {m.get('opener')} opens: "
            f"{self.strategy_a} {self.a_value:.2f} vs {self.strategy_b} {self.b_value:.2f} on {self.by} "
            f"(difference {self.difference:+.2f})"
        )


def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    episodes = episode_level(frame)
    if episodes.empty or "status" not in episodes:
        raise ExamplesError("the run has no finished episodes yet")
    return episodes[episodes["status"] == "ok"]


def _require_column(episodes: pd.DataFrame, by: str) -> None:
    choices = sorted(
        c
        for c in episodes.columns
        if c.startswith(("score_", "m_")) and pd.to_numeric(episodes[c].dropna(), errors="coerce").notna().all()
    )  # numbers (or nothing yet): a status or a name cannot rank episodes
    if by not in choices:
        raise ExamplesError(f"unknown column '{by}'; choose one of: {', '.join(choices) or 'none (nothing judged)'}")


def rank_columns(rubric: Rubric) -> list[str]:
    """The columns a pick can rank by before anything is played: the mean, each rubric criterion, and the
    outcome metrics that are numbers (or yes/no)."""
    from sandbox.table import OUTCOME_COLUMNS

    metrics = [column for column, dtype in OUTCOME_COLUMNS.items() if dtype != "string"]
    return ["score_mean", *(f"score_{c.id}" for c in rubric.criteria), *metrics]


def check_by(by: str, rubric: Rubric) -> None:
    """Refuse a ``--by`` no run of this rubric can have, before fresh examples play a single episode."""
    allowed = rank_columns(rubric)
    if by not in allowed:
        raise ExamplesError(f"--by '{by}' is not a column to rank by; choose one of: {', '.join(allowed)}")


def pick_examples(frame: pd.DataFrame, by: str = "score_mean", per_strategy: int = 1) -> list[Pick]:
    """The ``per_strategy`` highest and lowest finished episodes of each strategy on column ``by``.

    Episodes without a value are never picked; ties go to the lower episode id, so the same run
    always gives the same examples. A strategy with fewer than two scored episodes gets one pick.
    """
    episodes = _finished(frame)
    _require_column(episodes, by)
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


def pick_contrasts(
    frame: pd.DataFrame, strategy_a: str, strategy_b: str, by: str = "score_mean", count: int = 3
) -> list[ContrastPair]:
    """The ``count`` matched pairs of finished episodes where ``strategy_a`` and ``strategy_b`` differ most
    on ``by`` (largest absolute difference first; ties by episode ids, so a run always gives the same
    pairs). A pair needs a value on both sides: a failed or unjudged episode never makes one."""
    if strategy_a == strategy_b:
        raise ExamplesError(f"--contrast needs two different strategies, not '{strategy_a}' twice")
    episodes = _finished(frame)
    known = sorted(set(episodes["strategy"]))
    for strategy in (strategy_a, strategy_b):
        if strategy not in known:
            raise ExamplesError(f"no finished episode of '{strategy}'; the run has: {', '.join(known) or 'none'}")
    _require_column(episodes, by)
    pairs = matched_pairs(episodes, by, strategy_a, strategy_b).reset_index()
    if pairs.empty:
        raise ExamplesError(f"no matched pair of {strategy_a} and {strategy_b} has a value for '{by}'")
    pairs["gap"] = (pairs["a"] - pairs["b"]).abs()
    pairs = pairs.sort_values(["gap", "a_id", "b_id"], ascending=[False, True, True]).head(count)
    keys = [k for k in MATCH_KEYS if k in pairs]
    return [
        ContrastPair(
            a_episode_id=row["a_id"],
            b_episode_id=row["b_id"],
            strategy_a=strategy_a,
            strategy_b=strategy_b,
            by=by,
            a_value=float(row["a"]),
            b_value=float(row["b"]),
            match={k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in keys},
        )
        for _, row in pairs.iterrows()
    ]


def fresh_spec(
    rep: str,
    prospect: str,
    scenario: str,
    count: int,
    model: ModelSettings,
    contrast: str | None = None,
    judges: list[ModelSettings] | None = None,
    max_turns: int = 12,
) -> ExperimentSpec:
    """The experiment behind ``sandbox examples --rep ...``: seeds 1..count of one strategy (and of
    ``contrast``, paired) against one prospect in one scenario, judged (by ``model`` unless ``judges``)."""
    strategies = [rep] if contrast is None else [rep, contrast]
    slug = re.sub(r"[^a-z0-9-]+", "-", f"examples-{rep}-{prospect}".lower()).strip("-")
    return ExperimentSpec(
        id=slug,
        description=f"sandbox examples: {' vs '.join(strategies)} against {prospect} in {scenario}, {count} seeds",
        strategies=strategies,
        prospects=[prospect],
        scenarios=[scenario],
        seeds=count,
        max_turns=max_turns,
        models=RoleModels(rep=[model], prospect=[model], judge=[model] if judges is None else judges),
        baseline=contrast,
    )


# --------------------------------------------------------------------------- writing


def render_dialogue(
    transcript: Transcript,
    judgements: list[Judgement],
    metrics: OutcomeMetrics | None,
    why: str,
    rubric: Rubric | None = None,
) -> str:
    """One dialogue as a Markdown handout (shared by `sandbox examples` and `sandbox negotiate --handout`)."""
    view = transcript_view(transcript, judgements, metrics, rubric or _rubric(), label="", why=why)
    return render_dialogue_markdown(view)


def _rubric() -> Rubric | None:
    """The shipped rubric (criterion names and sources for the debrief); None when it cannot be read."""
    from sandbox.catalog import CatalogError
    from sandbox.judge import load_rubric

    try:
        return load_rubric()
    except (CatalogError, OSError):
        return None


def file_name(pick: Pick) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{pick.strategy}-{pick.rank}-{pick.episode_id}".lower())
    return f"{slug}.md"


_PICK_FILE = re.compile(r"[a-z0-9-]+-(highest|lowest)-[a-z0-9-]+\.md")  # what file_name writes


def stale_pick_files(folder: Path) -> list[Path]:
    """The files a previous best/worst pick wrote in ``folder`` (its handouts by :func:`file_name`'s pattern,
    and a PDF of its pack): removed before picking again, so picks by another column do not linger.
    Anything else there (a branch's pack, the contrast and fresh folders) is left alone."""
    handouts = [p for p in folder.glob("*.md") if _PICK_FILE.fullmatch(p.name)]
    return sorted(handouts) + [p for p in [folder / "pack.pdf"] if p.exists()]


def _results(run: RunFolder, ids: set[str]) -> dict[str, Any]:
    return {r.episode_id: r for r in run.latest(ids=ids)}  # only the picks held


def write_examples(
    folder: RunFolder | Path | str,
    by: str = "score_mean",
    per_strategy: int = 1,
    out: Path | None = None,
    rubric: Rubric | None = None,
    pdf: bool = False,
) -> tuple[Path, list[Pick]]:
    """One Markdown file per pick, an index (README.md), and the pack (pack.md, pack.html: each
    strategy's highest and lowest side by side) in ``out`` (default: run/examples).

    With ``pdf``, pack.pdf too; :class:`sandbox.packs.PdfError` says why not (the rest is written)."""
    run = RunFolder.of(folder)
    rubric = rubric or _rubric()
    picks = pick_examples(verified_frame(run), by=by, per_strategy=per_strategy)
    results = _results(run, {p.episode_id for p in picks})
    if out is None:
        out = run.examples_dir
        for stale in stale_pick_files(out):  # our own folder: picks by another column must not linger
            stale.unlink()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    columns: dict[str, list] = {}
    for pick in picks:
        name = file_name(pick)
        result = results[pick.episode_id]
        view = dialogue_view(
            result, rubric, label=f"{pick.rank} {by} ({pick.value:.2f})", why=f"Picked as the {pick.why}."
        )
        (out / name).write_text(render_dialogue_markdown(view), encoding="utf-8")
        index.append({"pick": pick, "file": name, "result": result})
        columns.setdefault(pick.strategy, []).append(view)
    embedded = any(played_by_embedded(e["result"].spec) for e in index)
    template = template_env(False).get_template("examples_index.md.j2")
    (out / "README.md").write_text(
        template.render(run=run.path.name, by=by, entries=index, embedded=embedded), encoding="utf-8"
    )
    panels = [
        Panel(title=f"{strategy}: highest and lowest {by}", why=f"The {strategy} episodes of run {run.path.name} "
              f"that scored highest and lowest on {by}.", columns=views)
        for strategy, views in columns.items()
    ]  # fmt: skip
    pack = Pack(
        title=f"Best and worst dialogues of run {run.path.name}",
        intro=f"Each strategy's highest and lowest finished episodes by {by}, side by side.",
        panels=panels,
    )
    write_pack(pack, out, "pack", pdf=pdf)
    return out, picks


def contrast_pack(run: RunFolder, pairs: list[ContrastPair], rubric: Rubric | None) -> Pack:
    """A panel per pair: no shared part, the two strategies side by side."""
    results = _results(run, {p.a_episode_id for p in pairs} | {p.b_episode_id for p in pairs})
    panels = []
    for number, pair in enumerate(pairs, start=1):
        columns = [
            dialogue_view(results[episode], rubric, label=f"{strategy}: {pair.by} {value:.2f}")
            for episode, strategy, value in (
                (pair.a_episode_id, pair.strategy_a, pair.a_value),
                (pair.b_episode_id, pair.strategy_b, pair.b_value),
            )
        ]
        title = f"Pair {number}: {pair.strategy_a} vs {pair.strategy_b}"
        panels.append(Panel(title=title, why=f"The same prospect, scenario, seed, opener and models; {pair.why}.",
                            columns=columns))  # fmt: skip
    a, b = pairs[0].strategy_a, pairs[0].strategy_b
    return Pack(
        title=f"{a} vs {b}: the same conversations, two strategies",
        intro=f"Run {run.path.name}: the {len(pairs)} matched pairs where {a} and {b} differ most on "
        f"{pairs[0].by} (verified judgements only).",
        panels=panels,
    )


def write_contrast(
    folder: RunFolder | Path | str,
    strategy_a: str,
    strategy_b: str,
    by: str = "score_mean",
    count: int = 3,
    out: Path | None = None,
    rubric: Rubric | None = None,
    pdf: bool = False,
) -> tuple[list[Path], list[ContrastPair]]:
    """The contrast pack of two strategies (``out`` default: run/examples/contrast), its files and pairs."""
    run = RunFolder.of(folder)
    pairs = pick_contrasts(verified_frame(run), strategy_a, strategy_b, by=by, count=count)
    pack = contrast_pack(run, pairs, rubric or _rubric())
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{strategy_a}-vs-{strategy_b}-by-{by}".lower())
    return write_pack(pack, Path(out) if out else run.examples_dir / "contrast", stem, pdf=pdf), pairs


def write_fresh(
    folder: RunFolder | Path | str,
    out: Path | None = None,
    rubric: Rubric | None = None,
    pdf: bool = False,
) -> list[Path]:
    """The pack of a fresh-examples run (``out`` default: run/examples/fresh): every seed, in order, one
    column each. Fresh examples of two strategies are a contrast: :func:`write_contrast`."""
    run = RunFolder.of(folder)
    rubric = rubric or _rubric()
    results = sorted((r for r in run.latest() if r.transcript is not None), key=lambda r: (r.spec.seed, r.episode_id))
    if not results:
        raise ExamplesError(f"{run.path}: no episode has a dialogue")
    panels = []
    for result in results:
        label = f"seed {result.spec.seed}" + ("" if result.status == "ok" else f" (failed: {result.error})")
        view = dialogue_view(result, rubric, label=label)
        panels.append(Panel(title=f"Seed {result.spec.seed}", columns=[view]))
    first = results[0].spec
    pack = Pack(
        title=f"{first.strategy} meets {first.prospect} in {first.scenario}",
        intro=f"Run {run.path.name}: {len(results)} dialogues, seeds {', '.join(str(r.spec.seed) for r in results)}.",
        panels=panels,
    )
    return write_pack(pack, Path(out) if out else run.examples_dir / "fresh", "pack", pdf=pdf)
