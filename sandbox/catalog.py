"""Load and validate the YAML content under ``personas/``.

Every failure becomes a :class:`CatalogError` whose message is one line naming the file
and the field, so a user editing YAML sees exactly what to fix and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sandbox.content import CONTENT_ROOT
from sandbox.schemas import Prospect, Scenario, Strategy

MAX_YAML_BYTES = 1_000_000
DEFAULT_ROOT = CONTENT_ROOT / "personas"

T = TypeVar("T", bound=BaseModel)


class CatalogError(ValueError):
    """A content problem, already phrased as one line for the user."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe_validation_error(path: Path | str, error: ValidationError) -> str:
    first = error.errors()[0]
    more = error.error_count() - 1
    suffix = f" (+{more} more)" if more else ""
    return f"{path}: field '{_field_path(first['loc'])}': {first['msg']}{suffix}"


def read_yaml(path: Path) -> object:
    """Parse one YAML file safely; errors name the file (and line where YAML gives one)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise CatalogError(f"{path}: file is {len(raw):,} bytes, over the {MAX_YAML_BYTES:,}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise CatalogError(f"{path}: file is empty")
    return data


def load_model(path: Path, model: type[T]) -> T:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(describe_validation_error(path, exc)) from None


def _load_dir(folder: Path, model: type[T]) -> dict[str, T]:
    if not folder.is_dir():
        raise CatalogError(f"{folder}: folder not found")
    items: dict[str, T] = {}
    origin: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        item = load_model(path, model)
        item_id = item.id  # type: ignore[attr-defined]
        if item_id in items:
            raise CatalogError(f"{path}: field 'id': duplicate id '{item_id}' (also in {origin[item_id]})")
        items[item_id] = item
        origin[item_id] = path
    return items


@dataclass(frozen=True)
class Catalog:
    strategies: dict[str, Strategy] = field(default_factory=dict)
    prospects: dict[str, Prospect] = field(default_factory=dict)
    scenarios: dict[str, Scenario] = field(default_factory=dict)

    def strategy(self, strategy_id: str) -> Strategy:
        return _pick(self.strategies, strategy_id, "strategy")

    def prospect(self, prospect_id: str) -> Prospect:
        return _pick(self.prospects, prospect_id, "prospect")

    def scenario(self, scenario_id: str) -> Scenario:
        return _pick(self.scenarios, scenario_id, "scenario")


def _pick(items: dict[str, T], item_id: str, kind: str) -> T:
    try:
        return items[item_id]
    except KeyError:
        known = ", ".join(sorted(items)) or "none"
        raise CatalogError(f"unknown {kind} '{item_id}' (known: {known})") from None


def load_catalog(root: Path | str = DEFAULT_ROOT) -> Catalog:
    root = Path(root)
    return Catalog(
        strategies=_load_dir(root / "strategies", Strategy),
        prospects=_load_dir(root / "prospects", Prospect),
        scenarios=_load_dir(root / "scenarios", Scenario),
    )
