"""What a line the person types means: a message, an action with its message, or a session command.

Pure, so every face (terminal, page) reads lines the same way and the tests need no session. A bad
line is a :class:`CommandError` whose text is one line saying what to type instead; the session
shows it and waits for the next line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CommandName = Literal["say", "offer", "accept", "walk", "hint", "undo", "restart", "quit", "help"]

HELP = "\n".join(
    [
        "type a message and press Enter to say it, or a command:",
        "  /offer PRICE [message]  put a price on the table (21600, 21,600 or 21.6k)",
        "  /accept [message]       accept the other side's standing offer",
        "  /walk [message]         walk away",
        "  /hint                   what the hint strategy would say now (shown, not sent)",
        "  /undo                   take back your last exchange",
        "  /restart                start the dialogue again",
        "  /quit                   end here and score it",
        "  /help                   this list",
    ]
)

_ALIASES: dict[str, CommandName] = {
    "offer": "offer",
    "accept": "accept",
    "walk": "walk",
    "walk-away": "walk",
    "hint": "hint",
    "undo": "undo",
    "restart": "restart",
    "quit": "quit",
    "end": "quit",
    "help": "help",
}
_TAKES_MESSAGE = {"offer", "accept", "walk"}
_PRICE = re.compile(r"^\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?([kK])?$")


class CommandError(ValueError):
    """A line that is not a valid command; the message says what to type instead."""


@dataclass(frozen=True)
class Command:
    name: CommandName
    message: str = ""
    price: float | None = None


def parse_price(text: str) -> float | None:
    """'21600', '21,600', '$21.6k' as an amount; None when the text is not one price."""
    match = _PRICE.match(text.strip().rstrip(",.;:"))
    if match is None:
        return None
    value = float(match.group(1).replace(",", "") + (match.group(2) or ""))
    return round(value * 1000, 2) if match.group(3) else value


def parse_line(line: str) -> Command | None:
    """The command a typed line is; None for a blank line. Plain text is a message with no action."""
    text = line.strip()
    if not text:
        return None
    if not text.startswith("/"):
        return Command("say", message=text)
    word, _, rest = text[1:].partition(" ")
    name = _ALIASES.get(word.lower())
    if name is None:
        raise CommandError(f"unknown command /{word}; /help lists the commands")
    rest = rest.strip()
    if name == "offer":
        if not rest:
            raise CommandError("/offer needs a price, e.g. /offer 21600 That is for two years")
        amount, _, message = rest.partition(" ")
        price = parse_price(amount)
        if price is None or price <= 0:
            raise CommandError(f"/offer: '{amount}' is not a price; write it as 21600, 21,600 or 21.6k")
        return Command("offer", message=message.strip(), price=price)
    if rest and name not in _TAKES_MESSAGE:
        raise CommandError(f"/{word} takes nothing after it")
    return Command(name, message=rest)
