"""The terminal face: plain ``input()`` for the person's lines, rich for what the session shows.

``input()`` blocks the event loop while the person types, which is what a practice session wants:
nothing else is running then (the agent has answered, the judge has not started), and Ctrl-C or
Ctrl-D reach the session at once instead of a thread stuck in ``input()``.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from sandbox.amounts import money_text
from sandbox.practice.events import (
    Ended,
    Event,
    Intro,
    Notice,
    Prompt,
    Restarted,
    Said,
    Scored,
    Suggestion,
    Undone,
)
from sandbox.practice.scorecard import Scorecard
from sandbox.schemas import Action, Scenario, Turn


def action_text(action: Action, scenario: Scenario) -> str:
    """'[offer 21,600 USD]', '[accept]', '' for talk."""
    if action.kind.value == "none":
        return ""
    price = f" {money_text(scenario, action.price)}" if action.price is not None else ""
    return f"[{action.kind.value}{price}]"


def short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TerminalIO:
    """:class:`~sandbox.practice.events.PracticeIO` on a terminal."""

    def __init__(self, console: Console, scenario: Scenario, names: dict[str, str], side: str):
        self.console = console
        self.scenario = scenario
        self.names = names
        self.side = side

    async def read(self, prompt: Prompt) -> str:
        label = "you> " if prompt.phase == "turn" else "score? [Enter] /undo /restart> "
        return input(label)

    def show(self, event: Event) -> None:
        print_event(self.console, event, self.scenario, self.names, self.side)


def turn_line(turn: Turn, names: dict[str, str], scenario: Scenario, side: str) -> str:
    colour = "cyan" if turn.speaker == "rep" else "magenta"
    who = names[turn.speaker] + (" (you)" if turn.speaker == side else "")
    action = action_text(turn.action, scenario)
    action = f"  [bold yellow]{escape(action)}[/]" if action else ""
    return f"[bold {colour}]{turn.index:>2} {escape(who)}[/]: {escape(turn.message)}{action}"


def print_event(console: Console, event: Event, scenario: Scenario, names: dict[str, str], side: str) -> None:
    if isinstance(event, Intro):
        console.print(f"[bold]Practice[/] - {escape(event.title)}")
        console.print(f"difficulty: {event.difficulty}")
        console.print("your brief:")
        for line in event.brief:
            console.print(f"  - {escape(line)}")
        console.print(f"[dim]{escape(event.help)}[/]\n")
    elif isinstance(event, Said):
        console.print(turn_line(event.turn, names, scenario, side))
        for note in event.turn.notes:
            console.print(f"   [dim]note: {escape(note)}[/]")
    elif isinstance(event, Notice):
        style = "bold red" if event.level == "error" else "dim"
        label = "error: " if event.level == "error" else ""
        console.print(f"[{style}]{label}{escape(event.text)}[/]", soft_wrap=True)
    elif isinstance(event, Suggestion):
        if event.error:
            console.print(f"[bold red]hint failed:[/] {escape(event.error)}")
            return
        action = action_text(event.action, scenario)
        console.print(
            f"[green]hint (suggestion, not sent) - {escape(event.source)}:[/] {escape(event.message)}"
            + (f"  [yellow]{escape(action)}[/]" if action else "")
        )
    elif isinstance(event, Undone):
        removed = ", ".join(str(i) for i in event.removed)
        console.print(f"[yellow]undone: turns {removed} taken back.[/] The dialogue now:")
        for turn in event.kept:
            console.print(turn_line(turn, names, scenario, side))
        if not event.kept:
            console.print("[dim](nothing said yet)[/]")
    elif isinstance(event, Restarted):
        console.print("[yellow]restarted: the dialogue begins again.[/]")
    elif isinstance(event, Ended):
        outcome = event.transcript.outcome
        price = f" at {money_text(scenario, outcome.price)}" if outcome.price is not None else ""
        reason = f" ({outcome.reason})" if outcome.reason else ""
        console.print(f"\n[bold]dialogue over: {outcome.status.value}{price}[/]{escape(reason)}")
        if not event.by_person:
            console.print("[dim]Enter (or /quit) scores it; /undo takes back your last exchange; /restart[/]")
    elif isinstance(event, Scored):
        print_scorecard(console, event.scorecard, scenario)
        for path in event.saved:
            console.print(f"saved: {escape(path)}", soft_wrap=True)


def print_scorecard(console: Console, card: Scorecard, scenario: Scenario) -> None:
    colour = {"pass": "green", "fail": "red"}.get(card.verdict, "yellow")
    mean = f"{card.mean:.2f}" if card.mean is not None else "-"
    console.print(
        f"\n[bold {colour}]Scorecard: {card.verdict.upper()}[/]  mean {mean} over {card.counted} verified scores, "
        f"pass mark {card.pass_mark:.2f}"
    )
    console.print(f"outcome: {escape(card.outcome)}")
    console.print(f"[dim]{escape(card.scope)}[/]")
    if card.brief_kept:
        console.print("brief kept: yes")
    else:
        console.print("[red]brief kept: no[/] - " + escape("; ".join(card.brief_findings)), soft_wrap=True)
    for item in card.criteria:
        score = f"{item.score:.1f}" if item.score is not None else " - "
        if not item.counts:
            console.print(f"[dim] {score}  {escape(item.name)}: {escape(item.note or '')}[/]", soft_wrap=True)
            continue
        pointer = item.went_well or item.to_try
        where = ""
        if pointer is not None and pointer.turn is not None:
            quote = f': "{escape(short(pointer.quote))}"' if pointer.quote else ""
            where = f"  [dim](turn {pointer.turn}{quote})[/]"
        console.print(f"[bold] {score}  {escape(item.name)}[/]{where}")
        if item.went_well is not None:
            console.print(f"      went well: {escape(item.went_well.text)}")
        if item.to_try is not None:
            console.print(f"      to try: {escape(item.to_try.text)}")
    moment = card.lowest
    if moment is not None:
        console.print(
            f"\n[bold]lowest-scored moment:[/] turn {moment.turn} ({escape(moment.criterion)}, {moment.score:.1f}): "
            f'you said "{escape(short(moment.said, 120))}"'
        )
        if moment.suggestion is not None:
            action = action_text(moment.suggestion_action or Action(), scenario)
            console.print(
                f"  [green]{escape(moment.suggestion_source or '')} there:[/] {escape(moment.suggestion)}"
                + (f"  [yellow]{escape(action)}[/]" if action else "")
            )
        elif moment.error:
            console.print(f"  [red]the suggestion could not be made:[/] {escape(moment.error)}")
    elif card.no_moment:
        console.print(f"[dim]lowest-scored moment: {escape(card.no_moment)}[/]")
    for warning in card.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")
