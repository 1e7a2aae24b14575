"""Load and validate the YAML content under ``personas/``.

Every failure becomes a :class:`CatalogError` whose message is one line naming the file
and the field, so a user editing YAML sees exactly what to fix and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode
from yaml.scanner import ScannerError

from sandbox.content import CONTENT_ROOT
from sandbox.schemas import Difficulty, Prospect, Scenario, Strategy

MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 100  # levels of nesting; shipped files use under 10
DEFAULT_ROOT = CONTENT_ROOT / "personas"

T = TypeVar("T", bound=BaseModel)


class CatalogError(ValueError):
    """A content problem, already phrased as one line for the user."""


class DifficultyError(CatalogError):
    """A level the persona file does not state; one line naming the prospect and the level."""


def at_difficulty(prospect: Prospect, level: Difficulty) -> Prospect:
    """The prospect with the level's overrides applied to its private brief (``normal``: as it is).

    What changes (walk-away margin, what the prospect reveals and when, patience) is written in the
    persona file's ``difficulty:`` block; this only applies it. Here, beside the catalog, so the engine
    (every episode at its spec's level) and a practice session apply a level the same way. The result
    carries no ``difficulty`` block (it is one level, not a choice of levels) and its catalog label names
    the level, so a saved transcript says what it was played against."""
    if level == "normal":
        return prospect
    overrides = getattr(prospect.difficulty, level, None) if prospect.difficulty is not None else None
    if overrides is None:
        raise DifficultyError(
            f"prospect '{prospect.id}' has no difficulty.{level} block in its persona file; "
            "play it at normal or add the block"
        )
    private = prospect.private.model_copy(update=overrides.model_dump(exclude_none=True))
    return prospect.model_copy(update={"private": private, "difficulty": None, "name": f"{prospect.name} ({level})"})


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


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses what ``safe_load`` lets through silently.

    A repeated key would let the last value win unseen (a persona changed without anyone
    noticing), and nesting a few thousand levels deep exhausts Python's stack in the recursive
    composer and constructor. Both are refused as ordinary YAML errors, before construction.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    # The scanner looks ahead over every '[' that might start a key, so a long run of openers
    # costs it quadratic time before the composer sees one: stop it at the limit too.
    def fetch_flow_collection_start(self, token_class: type) -> None:
        if self.flow_level >= MAX_YAML_DEPTH:
            raise ScannerError(None, None, _too_deep(), self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column: int) -> bool:
        if self.indent < column and len(self.indents) >= MAX_YAML_DEPTH:
            raise ScannerError(None, None, _too_deep(), self.get_mark())
        return super().add_indent(column)

    def _enter_collection(self) -> None:
        # The composer recurses once per level: stop it while the stack is still shallow.
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise ComposerError(None, None, _too_deep(), self.peek_event().start_mark)

    def compose_sequence_node(self, anchor: str | None) -> SequenceNode:
        self._enter_collection()
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        self._enter_collection()
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self._depth -= 1

    def construct_document(self, node: Node) -> object:
        self._check_graph(node)
        return super().construct_document(node)

    def _check_graph(self, root: Node) -> None:
        """Depth (aliases included, so a chain of anchors counts) and duplicate keys, walked
        without recursion; each node once, so an alias bomb costs its size, not its expansion."""
        if not isinstance(root, CollectionNode):
            return
        heights: dict[int, int] = {}
        on_path = {id(root)}
        self._check_keys(root)
        stack = [(root, iter(_children(root)))]
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                on_path.discard(id(node))
                heights[id(node)] = 1 + max((heights[id(c)] for c in _children(node)), default=0)
            elif id(child) in heights:
                if len(stack) + heights[id(child)] > MAX_YAML_DEPTH:
                    deepest = _descend(child, MAX_YAML_DEPTH - len(stack), heights)
                    raise ComposerError(None, None, _too_deep(), deepest.start_mark)
            elif id(child) in on_path:
                raise ComposerError(None, None, _too_deep(" (a node contains an alias to itself)"), child.start_mark)
            elif len(stack) >= MAX_YAML_DEPTH:
                raise ComposerError(None, None, _too_deep(), child.start_mark)
            else:
                on_path.add(id(child))
                self._check_keys(child)
                stack.append((child, iter(_children(child))))

    def _check_keys(self, node: CollectionNode) -> None:
        # Before flatten_mapping: keys merged in with '<<' may be overridden, written ones may not.
        if not isinstance(node, MappingNode):
            return
        seen: dict[object, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a collection as key is unhashable, and the constructor says so
            key = self.construct_object(key_node)
            if key in seen:
                first = seen[key].start_mark.line + 1
                problem = f"duplicate key {_short(repr(key))} (first at line {first})"
                raise ConstructorError(None, None, problem, key_node.start_mark)
            seen[key] = key_node


def _too_deep(why: str = "") -> str:
    return f"nested deeper than {MAX_YAML_DEPTH} levels{why}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _children(node: Node) -> Iterator[CollectionNode]:
    """The collections directly inside a node (keys and values both); scalars cannot nest."""
    if isinstance(node, SequenceNode):
        items: list[Node] = list(node.value)
    elif isinstance(node, MappingNode):
        items = [part for pair in node.value for part in pair]
    else:
        items = []
    return (item for item in items if isinstance(item, CollectionNode))


def _descend(node: Node, levels: int, heights: dict[int, int]) -> Node:
    """Follow the deepest branch down ``levels`` more levels: where the limit is crossed."""
    for _ in range(levels):
        node = max(_children(node), key=lambda c: heights[id(c)])
    return node


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
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
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


def load_catalog(root: Path | str = DEFAULT_ROOT, extra: Iterable[Path | str] = ()) -> Catalog:
    """The content under ``root`` (strategies/, prospects/ and scenarios/, each required), plus that of
    each ``extra`` folder (any of the three, each optional): how a project of its own adds a strategy
    or a persona to the shipped ones. An id found in two folders is an error naming both."""
    root = Path(root)
    kinds = (("strategies", Strategy), ("prospects", Prospect), ("scenarios", Scenario))
    loaded = {name: _load_dir(root / name, model) for name, model in kinds}
    origin = {name: dict.fromkeys(items, root / name) for name, items in loaded.items()}
    for folder in map(Path, extra):
        for name, model in kinds:
            if (folder / name).is_dir():
                for item_id, item in _load_dir(folder / name, model).items():
                    if item_id in loaded[name]:
                        where = origin[name][item_id]
                        raise CatalogError(f"{folder / name}: field 'id': duplicate id '{item_id}' (also in {where})")
                    loaded[name][item_id] = item
                    origin[name][item_id] = folder / name
    return Catalog(**loaded)  # type: ignore[arg-type]
