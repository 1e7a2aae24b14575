"""Amounts of money: read from the words of a message, and written for people in a scenario's format.

Pure and light (no model layer), so the agents' cross-checks, the metrics and the report all read
amounts the same way.
"""

from __future__ import annotations

import re
from typing import Protocol

# A number as people write a price, with an optional multiplier that ends its word ("19.2k", not "5 kids").
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:\s*(k|K|thousand|mn|m|M|million)(?![A-Za-z]))?")
_MULTIPLIER = {"k": 1e3, "K": 1e3, "thousand": 1e3, "m": 1e6, "M": 1e6, "mn": 1e6, "million": 1e6}
# Every note on a turn whose offer is not stated in its own message says this (the engine's and the
# two-call extraction check's alike), so the metrics count them from the notes.
UNSTATED = "is not stated in the message"


def prices_in(text: str) -> list[float]:
    """Every amount written in a message: '24,000', '$19.2k', '19200 USD', '20 thousand', '$1.2M', '4.87'."""
    amounts = []
    for number, multiplier in _NUMBER.findall(text):
        value = float(number.replace(",", ""))
        amounts.append(round(value * _MULTIPLIER[multiplier], 6) if multiplier else value)
    return amounts


def price_is_stated(price: float, text: str, tolerance: float = 0.005) -> bool:
    """Whether the message writes ``price`` (within ``tolerance`` of it, relative), in any of those ways."""
    return any(abs(amount - price) <= tolerance * max(price, 1.0) for amount in prices_in(text))


def among(figure: float, amounts: list[float]) -> bool:
    """Whether ``figure`` is exactly (to the cent) one of ``amounts``."""
    return any(abs(amount - figure) < 0.005 for amount in amounts)


class HasMoney(Protocol):
    currency: str

    def money(self, amount: float) -> str: ...


def money_text(scenario: HasMoney, amount: float | None) -> str | None:
    """An amount as the scenario writes it ('19,200 USD'), cents kept where there are any ('4.87 USD'):
    the scenario's own format rounds to whole units, which would show a 4.87 deal as '5 USD'."""
    if amount is None:
        return None
    if abs(amount - round(amount)) < 0.005:
        return scenario.money(amount)
    return f"{amount:,.2f} {scenario.currency}"
