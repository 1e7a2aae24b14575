"""Branches: a saved dialogue continued from one of its turns by another rep strategy.

For a trainer this answers "how should I have handled that objection"; for a researcher it is a
counterfactual with a common history. The source's turns before the branch point become the
episode spec's :class:`~sandbox.schemas.Prefix`, replayed by the engine as they were said, so the
continuations share them exactly and no model is asked to say them again.

A source is named one way everywhere (the CLI's TRANSCRIPT argument and a spec's
``branch_from.transcript``): a JSON file holding a transcript or an episode result (a practice
session's file, an exported episode), or a run folder with ``#EPISODE_ID`` (the id may be left out
when the run holds one episode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from sandbox.results import EpisodeResult
from sandbox.runfolder import NotARunFolderError, RunFolder
from sandbox.schemas import ActionKind, ModelSettings, Prefix, PrefixTurn, Rubric, Transcript

if TYPE_CHECKING:
    from sandbox.experiment import ExperimentSpec
    from sandbox.packs import Pack


class BranchError(ValueError):
    """A source or branch point that cannot be used; the message is one line naming which and why."""


def load_source(ref: str) -> Transcript:
    """The transcript ``ref`` names (see the module docstring for the forms)."""
    path_text, _, episode_id = ref.partition("#")
    path = Path(path_text)
    if path.is_dir():
        return _from_run(path, episode_id, ref)
    if not path.is_file():
        raise BranchError(f"{ref}: no such transcript file or run folder")
    if episode_id:
        raise BranchError(f"{ref}: '#EPISODE_ID' goes after a run folder, not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BranchError(f"{path}: not a JSON transcript ({exc})") from None
    try:
        if isinstance(data, dict) and "cast" in data:
            return Transcript.model_validate(data)
        result = EpisodeResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise BranchError(f"{path}: field '{where}': {first['msg']}") from None
    if result.transcript is None:
        raise BranchError(f"{path}: episode {result.episode_id} has no transcript ({result.error})")
    return result.transcript


def _from_run(folder: Path, episode_id: str, ref: str) -> Transcript:
    try:
        run = RunFolder(folder).require()
    except NotARunFolderError as exc:
        raise BranchError(str(exc)) from None
    if not episode_id:
        ids = run.latest_ids()
        if len(ids) != 1:
            raise BranchError(f"{ref}: the run holds {len(ids)} episodes; name one as {folder}#EPISODE_ID")
        episode_id = ids[0]
    found = next(iter(run.latest([episode_id])), None)
    if found is None:
        raise BranchError(f"{ref}: no episode '{episode_id}' in {folder}")
    if found.transcript is None:
        raise BranchError(f"{ref}: episode {episode_id} has no transcript ({found.error})")
    return found.transcript


def prefix_at(source: Transcript, at: int, ref: str) -> Prefix:
    """The turns before turn ``at``, to be replayed; the agents say turn ``at`` and what follows.

    ``at`` must leave at least one turn of the source behind it, and no turn before it may have
    ended the dialogue (there would be nothing to continue).
    """
    turns = source.turns
    if not 1 <= at <= len(turns):
        raise BranchError(f"{ref}: --at {at} is outside the dialogue's turns 1..{len(turns)}")
    for turn in turns[:at]:
        if turn.action.kind in (ActionKind.ACCEPT, ActionKind.WALK_AWAY):
            ends = turn.action.kind.value
            raise BranchError(f"{ref}: turn {turn.index} ends the dialogue ({ends}); branch at {turn.index} or before")
    return Prefix(
        source=ref,
        source_episode_id=source.episode_id,
        source_strategy=source.spec.strategy,
        turns=tuple(PrefixTurn(speaker=t.speaker, message=t.message, action=t.action) for t in turns[:at]),
        judged=False,
    )


def branch_experiment(
    ref: str,
    at: int,
    strategies: list[str],
    count: int,
    rep_model: ModelSettings | None = None,
    prospect_model: ModelSettings | None = None,
    judges: list[ModelSettings] | None = None,
    max_turns: int | None = None,
) -> ExperimentSpec:
    """The experiment ``sandbox branch`` runs: ``count`` seeds per strategy, all from one prefix.

    Unless told otherwise each side keeps the model it had in the source, so the continuations
    differ from the source only in who plays the rep from turn ``at`` on (and the seed).
    """
    from sandbox.experiment import BranchFrom, ExperimentSpec, RoleModels, resolve_branch

    source = load_source(ref)
    rep_model = rep_model or _agent_model(source.spec.rep_model, source.spec.prospect_model)
    prospect_model = prospect_model or _agent_model(source.spec.prospect_model, source.spec.rep_model)
    spec = ExperimentSpec(
        id=f"branch-{source.episode_id[:8]}-at{at}",
        description=f"{', '.join(strategies)} continuing {ref} from turn {at} (was {source.spec.strategy})",
        strategies=strategies,
        seeds=count,
        max_turns=max_turns or source.spec.max_turns,
        models=RoleModels(
            rep=[rep_model],
            prospect=[prospect_model],
            judge=list(judges or []),
        ),
        concurrency=min(4, max(1, count * len(strategies))),
        branch_from=BranchFrom(transcript=ref, at=at),
    )
    return resolve_branch(spec)


def _agent_model(own: ModelSettings, other: ModelSettings) -> ModelSettings:
    """The model that plays a side in a branch: its own, unless a person played it in the source (a
    practice session), where the agent's model from the other side takes over."""
    from sandbox.profiles import is_person

    return other if is_person(own) else own


def branch_pack(folder: Path | str, rubric: Rubric | None) -> Pack:
    """The branch's pack: the shared beginning once, then every continuation side by side, in the
    order strategy, seed; a continuation that failed is listed in the intro with its reason."""
    from sandbox.packs import Pack, Panel, dialogue_view, shared_turns
    from sandbox.runfolder import RunFolder

    results = sorted(RunFolder(folder).latest(), key=lambda r: (r.spec.strategy, r.spec.seed))
    played = [r for r in results if r.transcript is not None and r.spec.prefix is not None]
    if not played:
        raise BranchError(f"{folder}: no continuation has a transcript yet")
    prefix = played[0].spec.prefix
    assert prefix is not None
    shared = len(prefix.turns)
    columns = [dialogue_view(r, rubric, _label(r), from_turn=shared, why=_why(r)) for r in played]
    # A continuation that failed mid-dialogue is shown with its reason; one with nothing said is named here.
    failed = [f"{r.spec.strategy} seed {r.spec.seed}: {r.error}" for r in results if r not in played]
    strategies = ", ".join(dict.fromkeys(r.spec.strategy for r in played))
    intro = (
        f"The first {shared} turns of {prefix.source} (played by {prefix.source_strategy}) are shown once; "
        f"from turn {shared} on, {strategies} played the rep, {len(played)} continuations in all. The judge "
        "saw the shared turns as context and scored each continuation on its own turns."
    )
    if failed:
        intro += " Continuations that failed before saying anything: " + "; ".join(failed) + "."
    panel = Panel(
        title=f"From turn {shared}",
        why=f"The same beginning, continued by {strategies}.",
        shared=shared_turns(played[0], rubric, upto=shared),
        columns=columns,
    )
    title = f"What would {strategies} say here? {played[0].spec.prospect} on {played[0].spec.scenario}"
    return Pack(title=title, intro=intro, panels=[panel])


def _label(result: EpisodeResult) -> str:
    label = f"{result.spec.strategy}, seed {result.spec.seed}"
    return label if result.status == "ok" else f"{label} (failed: {result.error})"


def _why(result: EpisodeResult) -> str:
    transcript = result.transcript
    assert transcript is not None
    return f"Continued with seed {result.spec.seed}: {len(transcript.turns) - transcript.prefix_turns} turns played."
