"""One practice session: a person plays one side, an agent the other, through the one engine loop.

The engine plays the dialogue with :class:`~sandbox.practice.human.HumanPolicy` on the person's
side. ``/undo`` and ``/restart`` unwind it, and it is started again with the turns to keep as the
spec's :attr:`~sandbox.schemas.EpisodeSpec.prefix`: the engine replays them as said (no model is
asked again) and the person speaks next. The kept turns are the ones first played, calls and notes
included, so the saved transcript is the dialogue as it finally stood, under the session's own spec.

``/hint`` and the scorecard's "what the hint strategy would have said" are one function,
:func:`suggest`: the turn an agent playing the person's side would say after a given history,
asked through :func:`sandbox.engine.turn_request` exactly as the engine asks, with the hint strategy
in the rep's prompt (or the persona's own prompt when the person plays the prospect). It is shown,
never sent.

At the end the session is finished as every episode is (:func:`sandbox.episode.finish_episode`:
measured, judged with evidence checked, totalled), the scorecard reads the verdicts for the person's
side, and the session is saved as a run folder of one episode under ``runs/practice/<session-id>/``
(``manifest.json`` as a run writes it, ``episodes.jsonl``: what :class:`~sandbox.runfolder.RunFolder`,
``sandbox report``, ``sandbox examples``, ``sandbox export`` and ``sandbox branch`` read) with
``transcript.json`` (what ``sandbox judge`` reads) and ``scorecard.json`` beside it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox import __version__
from sandbox.agents import TurnPolicy, TurnResult, policy_for
from sandbox.amounts import money_text
from sandbox.catalog import Catalog, at_difficulty
from sandbox.engine import negotiate, standing_offers, turn_request
from sandbox.episode import finish_episode
from sandbox.experiment import ExperimentSpec, RoleModels
from sandbox.judge import describe_outcome
from sandbox.models import ModelCallError
from sandbox.practice.commands import HELP, CommandError, parse_line
from sandbox.practice.events import (
    Ended,
    Intro,
    Notice,
    PracticeIO,
    Prompt,
    Restarted,
    Said,
    Scored,
    Suggestion,
    Undone,
)
from sandbox.practice.human import EndPractice, HumanPolicy, Restart, Undo
from sandbox.practice.scorecard import Scorecard, build_scorecard
from sandbox.profiles import PERSON, Profiles
from sandbox.results import EpisodeResult
from sandbox.schemas import (
    Action,
    Cast,
    Difficulty,
    EpisodeSpec,
    ModelSettings,
    Outcome,
    OutcomeStatus,
    Prefix,
    PrefixTurn,
    Rubric,
    Source,
    Speaker,
    Strategy,
    Transcript,
    Turn,
    brief_for,
)

# The person's side in the saved spec (profiles.is_person knows it): no model played it, and a judge
# sharing the agent's model is then flagged for the agent's side only.
HUMAN_MODEL = PERSON
HUMAN_STRATEGY = Strategy(
    id="human",
    name="A person (sandbox practice)",
    summary="A person typed this side's turns in a practice session; no prompt played it.",
    guidance=["No strategy prompt: the person chose every word."],
    on_price_pushback="As the person chose.",
    sources=[Source(title="sandbox practice session", author="the person practising")],
)
PRACTICE_DIR = "practice"


class PracticeSetup(BaseModel):
    """Everything a session is started with (saved in its manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prospect: str
    scenario: str
    side: Speaker = Field("rep", description="The side the person plays.")
    difficulty: Difficulty = "normal"
    hint_strategy: str = Field("assertive-consultant", description="Whose words /hint suggests (the rep side).")
    rep_strategy: str = Field(
        "assertive-consultant", description="The agent rep's strategy, when the person plays the prospect."
    )
    pass_mark: float = Field(3.5, ge=1, le=5)
    max_turns: int = Field(12, ge=2, le=200)
    seed: int = 1
    opener: Speaker = "rep"
    agent_model: ModelSettings = ModelSettings()
    judges: list[ModelSettings] = Field(default_factory=list)

    @property
    def agent_side(self) -> Speaker:
        return "prospect" if self.side == "rep" else "rep"


def practice_cast(setup: PracticeSetup, catalog: Catalog) -> Cast:
    """The cast from the persona and scenario files, the prospect at the session's level. Raises the
    catalog's or the level's one-line error for an unknown id or a level the file does not state."""
    prospect = at_difficulty(catalog.prospect(setup.prospect), setup.difficulty)
    scenario = catalog.scenario(setup.scenario)
    strategy = HUMAN_STRATEGY if setup.side == "rep" else catalog.strategy(setup.rep_strategy)
    return Cast(strategy=strategy, prospect=prospect, scenario=scenario, brief=brief_for(prospect, scenario))


def hint_cast(setup: PracticeSetup, cast: Cast, catalog: Catalog) -> Cast:
    """The cast the hint speaks from: the hint strategy in the rep's seat (a prospect's hint is the persona's own)."""
    if setup.side == "rep":
        return cast.model_copy(update={"strategy": catalog.strategy(setup.hint_strategy)})
    return cast


def practice_spec(setup: PracticeSetup, cast: Cast) -> EpisodeSpec:
    human, agent = HUMAN_MODEL, setup.agent_model
    return EpisodeSpec(
        strategy=cast.strategy.id,
        prospect=setup.prospect,
        scenario=setup.scenario,
        seed=setup.seed,
        max_turns=setup.max_turns,
        opener=setup.opener,
        rep_model=human if setup.side == "rep" else agent,
        prospect_model=agent if setup.side == "rep" else human,
        difficulty=setup.difficulty,
    )


def practice_experiment(setup: PracticeSetup, spec: EpisodeSpec, session_id: str) -> ExperimentSpec:
    """The one-episode experiment a session is, as a run's manifest holds one: what the report, the
    examples and a resume read; its expansion is the session's own episode."""
    return ExperimentSpec(
        id=session_id,
        description=f"a sandbox practice session: a person played the {setup.side}",
        strategies=[spec.strategy],
        prospects=[spec.prospect],
        scenarios=[spec.scenario],
        seeds=[spec.seed],
        openers=[spec.opener],
        models=RoleModels(rep=[spec.rep_model], prospect=[spec.prospect_model], judge=list(setup.judges)),
        max_turns=spec.max_turns,
        difficulty=spec.difficulty,
        concurrency=1,
    )


async def suggest(spec: EpisodeSpec, cast: Cast, turns: list[Turn], side: Speaker, policy: TurnPolicy) -> TurnResult:
    """What an agent playing ``side`` from ``cast`` would say the turn after ``turns``: the hint now, and
    the scorecard's "what the hint strategy would have said" at the lowest-scored turn."""
    request = turn_request(spec, cast, turns, side, standing_offers(turns, cast.scenario))
    return await policy.take_turn(request)


class PracticeRecord(BaseModel):
    """What a finished session left: where it is saved and its scorecard."""

    session_id: str
    folder: Path
    transcript_path: Path
    scorecard: Scorecard


def brief_lines(cast: Cast, side: Speaker) -> list[str]:
    """What the person's side knows that the other does not (as its agent's prompt would hold it)."""
    scenario = cast.scenario

    def money(amount: float) -> str:
        return money_text(scenario, amount) or ""

    lines = [
        f"{scenario.seller} sells {scenario.product.strip()} "
        f"List price {money(scenario.list_price)} {scenario.price_unit}."
    ]
    if side == "rep":
        private = scenario.rep_private
        lines.append(f"Your floor (never offer or accept less): {money(private.floor_price)}.")
        if private.may_concede:
            lines.append("You may concede: " + "; ".join(private.may_concede) + ".")
        if private.must_not_concede:
            lines.append("You must not concede: " + "; ".join(private.must_not_concede) + ".")
        lines.append(f"You are talking to {cast.prospect.display_name}: {cast.prospect.public_profile.strip()}")
        return lines
    private = cast.prospect.private
    lines.append(f"You are {cast.prospect.display_name}. {cast.prospect.public_profile.strip()}")
    lines.append(f"Your real need: {private.real_need.strip()}")
    lines.append(
        f"Your budget: {money(cast.brief.budget)}; the most you will pay: {money(cast.brief.walk_away_price)}."
    )
    if private.alternatives:
        lines.append("Your alternatives: " + "; ".join(private.alternatives) + ".")
    lines.extend(f"How you behave: {line}" for line in private.behaviour)
    return lines


class PracticeSession:
    """One session, from the first turn to the saved scorecard; the face is ``io``."""

    def __init__(
        self,
        setup: PracticeSetup,
        catalog: Catalog,
        rubric: Rubric,
        profiles: Profiles,
        io: PracticeIO,
        runs_dir: Path = Path("runs"),
    ):
        self.setup = setup
        self.rubric = rubric
        self.io = io
        self.runs_dir = runs_dir
        self.cast = practice_cast(setup, catalog)
        self.hint_cast = hint_cast(setup, self.cast, catalog)
        self.spec = practice_spec(setup, self.cast)
        agent = profiles[setup.agent_model]
        self.agent: TurnPolicy = policy_for(agent)
        self.agent_unstated = agent.unstated_offers
        self.judges = [profiles[j] for j in setup.judges]
        scenario = self.cast.scenario
        self.names: dict[Speaker, str] = {"rep": scenario.rep_name, "prospect": self.cast.prospect.display_name}
        self.human = HumanPolicy(io, scenario, self.hint, self.can_undo, lambda: len(self.turns))
        self.turns: list[Turn] = []
        self.hints: list[dict[str, object]] = []
        self.undos = 0
        self.restarts = 0
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ what the person can ask for

    def can_undo(self) -> bool:
        return any(t.speaker == self.setup.side for t in self.turns)

    @property
    def hint_source(self) -> str:
        if self.setup.side == "rep":
            return f"{self.hint_cast.strategy.name} would say"
        return f"{self.cast.prospect.display_name}, as the persona file plays the part, would say"

    async def hint(self) -> None:
        """``/hint``: the suggestion for the turn the person is about to say, shown and never sent."""
        turn = len(self.turns)
        try:
            result = await suggest(self.spec, self.hint_cast, list(self.turns), self.setup.side, self.agent)
        except ModelCallError as exc:
            self.io.show(Suggestion(self.hint_source, "", Action(), turn, error=exc.reason))
            return
        self.hints.append({"turn": turn, "message": result.message, "action": result.action.model_dump(mode="json")})
        self.io.show(Suggestion(self.hint_source, result.message, result.action, turn))

    # ------------------------------------------------------------------ playing

    def _spec_keeping(self, kept: list[Turn]) -> EpisodeSpec:
        if not kept:
            return self.spec
        prefix = Prefix(
            source="practice session (turns kept after an undo)",
            source_episode_id=self.spec.episode_id,
            source_strategy=self.spec.strategy,
            turns=tuple(PrefixTurn(speaker=t.speaker, message=t.message, action=t.action) for t in kept),
        )
        return EpisodeSpec(**{**self.spec.model_dump(), "prefix": prefix})

    def _said(self, turn: Turn) -> None:
        self.turns.append(turn)
        self.io.show(Said(turn, by_person=turn.speaker == self.setup.side))

    def _before_last_own_turn(self) -> list[Turn]:
        last = max(i for i, t in enumerate(self.turns) if t.speaker == self.setup.side)
        return self.turns[:last]

    def _undo(self) -> list[Turn]:
        kept = self._before_last_own_turn()
        self.undos += 1
        self.io.show(Undone(removed=[t.index for t in self.turns[len(kept) :]], kept=list(kept)))
        return kept

    async def play(self) -> Transcript | None:
        """The dialogue as it finally stands (None when the person ended it before saying anything)."""
        kept: list[Turn] = []
        rules = {self.setup.side: "count", self.setup.agent_side: self.agent_unstated}
        while True:
            self.turns = list(kept)
            policies = {self.setup.side: self.human, self.setup.agent_side: self.agent}
            try:
                played = await negotiate(
                    self._spec_keeping(kept),
                    self.cast,
                    policies["rep"],
                    policies["prospect"],
                    on_turn=self._said,
                    unstated_offers=rules,  # type: ignore[arg-type]
                )
            except Undo:
                kept = self._undo()
                continue
            except Restart:
                kept = self._restart()
                continue
            except EndPractice:
                if not self.can_undo():
                    return None
                transcript = self._ended_here()
                self.io.show(Ended(transcript, by_person=True))
                return transcript
            transcript = self._as_played(played)
            self.io.show(Ended(transcript, by_person=False))
            choice = await self._closing()
            if choice == "undo":
                kept = self._undo()
            elif choice == "restart":
                kept = self._restart()
            else:
                return transcript

    def _restart(self) -> list[Turn]:
        self.restarts += 1
        self.io.show(Restarted())
        return []

    async def _closing(self) -> Literal["score", "undo", "restart"]:
        """A dialogue that ended by itself: the person may still take back the last exchange."""
        while True:
            try:
                line = await self.io.read(Prompt("ended", turn=len(self.turns)))
            except EOFError:
                return "score"
            try:
                command = parse_line(line)
            except CommandError as exc:
                self.io.show(Notice(str(exc), "error"))
                continue
            if command is None or command.name == "quit":
                return "score"
            if command.name == "undo" and self.can_undo():
                return "undo"
            if command.name == "restart":
                return "restart"
            if command.name == "help":
                self.io.show(Notice(HELP))
                continue
            self.io.show(
                Notice(
                    "the dialogue has ended: Enter or /quit scores it, /undo takes back your last exchange, /restart",
                    "error",
                )
            )

    def _elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 3)

    def _as_played(self, played: Transcript) -> Transcript:
        """The engine's transcript under the session's own spec, with the kept turns as first played."""
        assert [t.message for t in played.turns] == [t.message for t in self.turns], "kept turns drifted"
        return played.model_copy(
            update={
                "spec": self.spec,
                "episode_id": self.spec.episode_id,
                "turns": list(self.turns),
                "wall_time_s": self._elapsed(),
            }
        )

    def _ended_here(self) -> Transcript:
        said = sum(1 for t in self.turns if t.speaker == self.setup.side)
        outcome = Outcome(
            status=OutcomeStatus.MAX_TURNS,
            reason=f"the person ended the practice after {len(self.turns)} turns ({said} of them theirs)",
        )
        return Transcript(
            episode_id=self.spec.episode_id,
            spec=self.spec,
            cast=self.cast,
            turns=list(self.turns),
            outcome=outcome,
            wall_time_s=self._elapsed(),
            sandbox_version=__version__,
        )

    # ------------------------------------------------------------------ scoring and saving

    def outcome_text(self, transcript: Transcript) -> str:
        outcome = transcript.outcome
        scenario = self.cast.scenario
        text = describe_outcome(outcome.status, outcome.price, outcome.decided_by, lambda a: money_text(scenario, a))
        return f"{text} ({outcome.reason})" if outcome.reason and outcome.status is not OutcomeStatus.DEAL else text

    async def score(self, session_id: str, transcript: Transcript) -> tuple[Scorecard, EpisodeResult]:
        """The session as an episode result (measured, judged and totalled as every episode is, by
        :func:`sandbox.episode.finish_episode`) and the scorecard read from its verdicts."""
        if transcript.outcome.status is not OutcomeStatus.FAILED and self.judges:
            models = ", ".join(j.model_id for j in self.judges)
            self.io.show(Notice(f"scoring: {len(self.rubric.criteria)} criteria, judge {models} ..."))
        result = await finish_episode(session_id, self.spec, transcript, self.rubric, self.judges, self.started)
        card = build_scorecard(
            transcript,
            result.judgements,
            self.rubric,
            self.setup.side,
            self.setup.pass_mark,
            self.outcome_text(transcript),
        )
        if card.lowest is not None:
            moment = card.lowest
            try:
                suggestion = await suggest(
                    self.spec, self.hint_cast, transcript.turns[: moment.turn], self.setup.side, self.agent
                )
                update = {
                    "suggestion_source": self.hint_source,
                    "suggestion": suggestion.message,
                    "suggestion_action": suggestion.action,
                }
            except ModelCallError as exc:
                update = {"suggestion_source": self.hint_source, "error": exc.reason}
            card = card.model_copy(update={"lowest": moment.model_copy(update=update)})
        return card, result

    async def run(self) -> PracticeRecord | None:
        """Play, score, save; None when there was nothing of the person's to score."""
        side = self.setup.side
        agent = self.cast.prospect.name if side == "rep" else self.cast.strategy.name
        title = (
            f"{self.cast.scenario.title}: you are {self.names[side]} ({side}); "
            f"{self.names[self.setup.agent_side]} is played by an agent ({agent})"
        )
        self.io.show(Intro(title, side, dict(self.names), self.setup.difficulty, brief_lines(self.cast, side), HELP))
        transcript = await self.play()
        if transcript is None:
            self.io.show(Notice("you ended the session before saying anything: nothing to score or save"))
            return None
        session_id, folder = self._folder()
        card, result = await self.score(session_id, transcript)
        record = self.save(folder, result, card)
        self.io.show(Scored(card, [str(record.folder), str(record.transcript_path)]))
        return record

    def _folder(self) -> tuple[str, Path]:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = f"{self.setup.prospect}-{self.setup.scenario}-{self.setup.side}-{stamp}"
        root = self.runs_dir / PRACTICE_DIR
        session_id, n = base, 1
        while (root / session_id).exists():
            n += 1
            session_id = f"{base}-{n}"
        return session_id, root / session_id

    def save(self, folder: Path, result: EpisodeResult, card: Scorecard) -> PracticeRecord:
        """The run folder of one episode, with the manifest a run writes (the spec a runner would play
        this episode from) and the session's own keys beside it."""
        from sandbox.runner import manifest_for
        from sandbox.store import RunStore

        transcript = result.transcript
        assert transcript is not None
        session_id = result.run_id
        manifest = manifest_for(practice_experiment(self.setup, self.spec, session_id), session_id, None, 1)
        manifest |= {
            "kind": "practice",
            "models": sorted({self.setup.agent_model.model, *(j.model for j in self.setup.judges)}),
            "practice": self.setup.model_dump(mode="json"),
            "person_side": self.setup.side,
            "undos": self.undos,
            "restarts": self.restarts,
            "hints": self.hints,
        }
        with RunStore(folder) as store:
            store.write_manifest(manifest)
            store.append(result)
        transcript_path = folder / "transcript.json"
        transcript_path.write_text(transcript.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (folder / "scorecard.json").write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return PracticeRecord(session_id=session_id, folder=folder, transcript_path=transcript_path, scorecard=card)
