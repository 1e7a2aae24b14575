"""A prospect at a practice level. What changes (walk-away margin, what the prospect reveals and
when, patience) is written in the persona file's ``difficulty:`` block; this only applies it."""

from __future__ import annotations

from typing import Literal

from sandbox.schemas import Prospect

Difficulty = Literal["easy", "normal", "hard"]
LEVELS: tuple[Difficulty, ...] = ("easy", "normal", "hard")


class DifficultyError(ValueError):
    """A level the persona file does not state; one line naming the prospect and the level."""


def at_difficulty(prospect: Prospect, level: Difficulty) -> Prospect:
    """The prospect with the level's overrides applied to its private brief (``normal``: as it is).

    The result carries no ``difficulty`` block (it is one level, not a choice of levels) and its
    catalog label names the level, so a saved transcript says what it was played against."""
    if level == "normal":
        return prospect
    overrides = getattr(prospect.difficulty, level, None) if prospect.difficulty is not None else None
    if overrides is None:
        raise DifficultyError(
            f"prospect '{prospect.id}' has no difficulty.{level} block in its persona file; "
            "use --difficulty normal or add the block"
        )
    private = prospect.private.model_copy(update=overrides.model_dump(exclude_none=True))
    return prospect.model_copy(update={"private": private, "difficulty": None, "name": f"{prospect.name} ({level})"})
