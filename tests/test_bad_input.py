"""Bad input, generated: every malformed YAML file gives one line naming the file (and the field
where there is one), never a traceback, never a partial run.

Each test counts and prints the cases it tried itself, so the file passes alone, test by test,
in any order and split across workers.
"""

from __future__ import annotations

import copy
import string
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sandbox.calibration import load_calibration
from sandbox.catalog import MAX_YAML_DEPTH, CatalogError, load_catalog, load_model
from sandbox.experiment import ExperimentSpec
from sandbox.judge import load_rubric
from sandbox.schemas import Prospect, Rubric, Scenario, Strategy
from tests.conftest import ROOT

FILES = {
    "strategy": ROOT / "personas/strategies/humble-equal.yaml",
    "prospect": ROOT / "personas/prospects/skeptic.yaml",
    "scenario": ROOT / "personas/scenarios/saas-seats.yaml",
    "rubric": ROOT / "judges/rubric.yaml",
    "experiment": ROOT / "experiments/quickstart.yaml",
    "calibration": ROOT / "judges/calibration/manipulation.yaml",
}
# The test's own YAML work (writing the mutated files, finding where a key sits) in libyaml where
# installed: it was most of these tests' time. The loader under test is the package's, unchanged.
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TEXT = {kind: path.read_text() for kind, path in FILES.items()}
VALID = {kind: yaml.safe_load(text) for kind, text in TEXT.items()}
COMPOSED = {kind: yaml.compose(text) for kind, text in TEXT.items()}
SCHEMAS = {
    "strategy": Strategy,
    "prospect": Prospect,
    "scenario": Scenario,
    "rubric": Rubric,
    "experiment": ExperimentSpec,
}
CATALOG = load_catalog(ROOT / "personas")
RUBRIC = load_rubric(ROOT / "judges/rubric.yaml")


def _loader(kind: str) -> Callable[[Path], object]:
    if kind == "calibration":  # a folder of case files, checked against the rubric and scenarios
        return lambda path: load_calibration(path.parent, RUBRIC, CATALOG)
    return lambda path: load_model(path, SCHEMAS[kind])


LOADERS = {kind: _loader(kind) for kind in FILES}
RECURSION_LIMIT = sys.getrecursionlimit()

junk_values = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)  # fmt: skip


class Tally:
    """The cases one test tried, by kind of file; printed for bench/fault_summary.py."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_kind: Counter[str] = Counter()

    def file(self, kind: str) -> Path:
        """A fresh file in a folder of its own (calibration loads a whole folder)."""
        self.by_kind[kind] += 1
        folder = self.folder / f"{sum(self.by_kind.values())}-{kind}"
        folder.mkdir()
        return folder / f"{kind}.yaml"

    def report(self, test: str, outcome: str, minimum: int) -> None:
        total = sum(self.by_kind.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.by_kind.items()))
        print(f"\nbad-input cases tried: {total} in {test} ({kinds}); each {outcome}")
        assert total >= minimum, (total, minimum)


def check_one_line(path: Path, kind: str) -> None:
    try:
        LOADERS[kind](path)
    except CatalogError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert str(path) in message, message
    # a file that happens to be valid is fine too: what matters is no other exception escapes


def check_refused(path: Path, kind: str, problem: str, line: int) -> str:
    """The file must be refused, in one line naming the file, the line and the problem."""
    with pytest.raises(CatalogError) as exc:
        LOADERS[kind](path)
    message = str(exc.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: invalid YAML at line {line}: {problem}"), (message, problem, line)
    return message


def test_mutated_fields(tmp_path):
    tally = Tally(tmp_path)

    @settings(max_examples=150, deadline=None)
    @given(kind=st.sampled_from(sorted(SCHEMAS)), data=st.data())
    def case(kind, data):
        document = dict(VALID[kind])
        key = data.draw(st.sampled_from(sorted(document)))
        action = data.draw(st.sampled_from(["drop", "junk", "unknown-key"]))
        if action == "drop":
            document.pop(key)
        elif action == "junk":
            document[key] = data.draw(junk_values)
        else:
            document[data.draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))] = 1
        path = tally.file(kind)
        path.write_text(yaml.dump(document, Dumper=DUMPER))
        check_one_line(path, kind)

    case()
    tally.report("test_mutated_fields", "gave one line naming the file, or loaded", minimum=150)


def test_arbitrary_bytes(tmp_path):
    tally = Tally(tmp_path)

    @settings(max_examples=150, deadline=None)
    @given(kind=st.sampled_from(sorted(FILES)), raw=st.binary(max_size=300))
    def case(kind, raw):
        path = tally.file(kind)
        path.write_bytes(raw)
        check_one_line(path, kind)

    case()
    tally.report("test_arbitrary_bytes", "gave one line naming the file, or loaded", minimum=150)


def _flow(depth: int, pattern: list[str], key: str) -> str:
    """``depth`` nested flow collections on one line, openers cycling through ``pattern``."""
    openers = {"seq": "[", "seq-after-item": "[1, ", "map": f"{{{key}: ", "map-second-key": f"{{z: 1, {key}: "}
    closers = {"seq": "]", "seq-after-item": "]", "map": "}", "map-second-key": "}"}
    chosen = [pattern[i % len(pattern)] for i in range(depth)]
    return "".join(openers[c] for c in chosen) + "x" + "".join(closers[c] for c in reversed(chosen))


def _value_slots(root: Node) -> list[tuple[list[object], int]]:
    """Every place a value sits in a composed document, at any level: (container's list, index)."""
    slots: list[tuple[list[object], int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, MappingNode):
            for index, (_, value) in enumerate(node.value):
                slots.append((node.value, index))
                stack.append(value)
        elif isinstance(node, SequenceNode):
            for index, value in enumerate(node.value):
                slots.append((node.value, index))
                stack.append(value)
    return slots


def _embed(kind: str, fragment: str, pick: int) -> tuple[str, int]:
    """The kind's valid file with one value, at any level, replaced by ``fragment``; and its line."""
    root = yaml.compose(TEXT[kind])
    slots = _value_slots(root)
    container, index = slots[pick % len(slots)]
    placeholder = ScalarNode("tag:yaml.org,2002:str", "DEEP_PLACEHOLDER")
    if isinstance(container[index], tuple):
        container[index] = (container[index][0], placeholder)
    else:
        container[index] = placeholder
    text = yaml.serialize(root, Dumper=yaml.SafeDumper, width=10_000)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "DEEP_PLACEHOLDER" in row)
    return text.replace("DEEP_PLACEHOLDER", fragment), line


deep_documents = st.one_of(
    st.tuples(st.just("flow"), st.integers(RECURSION_LIMIT + 200, 6_000)),
    st.tuples(st.just("embedded-flow"), st.integers(RECURSION_LIMIT + 200, 6_000)),
    st.tuples(st.just("block-sequence"), st.integers(RECURSION_LIMIT + 200, 6_000)),
    st.tuples(st.just("block-then-flow"), st.integers(RECURSION_LIMIT + 200, 6_000)),
    # indented mappings: the byte limit caps these near 1,000 levels, still deep enough to crash
    st.tuples(st.just("block-mapping"), st.integers(MAX_YAML_DEPTH + 1, 900)),
)


def test_deep_nesting_is_refused_for_every_kind(tmp_path):
    tally = Tally(tmp_path)
    styles: Counter[str] = Counter()

    @settings(max_examples=60, deadline=None)
    @given(
        document=deep_documents,
        pattern=st.lists(st.sampled_from(["seq", "seq-after-item", "map", "map-second-key"]), min_size=1, max_size=4),
        key=st.text(string.ascii_lowercase, min_size=1, max_size=6),
        pick=st.integers(0, 10_000),
    )
    def case(document, pattern, key, pick):
        style, depth = document
        styles[style] += 1
        for kind in FILES:
            if style == "flow":
                text, line = _flow(depth, pattern, key), 1
            elif style == "embedded-flow":
                text, line = _embed(kind, _flow(depth, pattern, key), pick)
            elif style == "block-sequence":
                text, line = "- " * depth + "x\n", 1
            elif style == "block-then-flow":  # neither kind alone need cross the limit
                block = pick % MAX_YAML_DEPTH
                text, line = "- " * block + _flow(depth - block, pattern, key) + "\n", 1
            else:
                text = "".join("  " * level + f"{key}:\n" for level in range(depth)) + "  " * depth + "x\n"
                line = MAX_YAML_DEPTH + 1  # each level opens on its own line
            path = tally.file(kind)
            path.write_text(text)
            check_refused(path, kind, f"nested deeper than {MAX_YAML_DEPTH} levels", line)

    case()
    print(f"\ndeep-nesting styles tried: {dict(sorted(styles.items()))}")
    tally.report(
        "test_deep_nesting_is_refused_for_every_kind", "refused in one line naming the file and line", minimum=60 * 6
    )


def _mappings(root: Node) -> list[tuple[tuple[int, ...], MappingNode]]:
    """Every mapping in a composed document, at any level, with the path of indexes to it."""
    found: list[tuple[tuple[int, ...], MappingNode]] = []
    stack: list[tuple[tuple[int, ...], Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, MappingNode):
            found.append((path, node))
            stack.extend(((*path, i), value) for i, (_, value) in enumerate(node.value))
        elif isinstance(node, SequenceNode):
            stack.extend(((*path, i), value) for i, value in enumerate(node.value))
    return found


def _follow(root: Node, path: tuple[int, ...]) -> Node:
    node = root
    for index in path:
        item = node.value[index]
        node = item[1] if isinstance(node, MappingNode) else item
    return node


def test_duplicate_keys_at_any_level_are_refused_for_every_kind(tmp_path):
    tally = Tally(tmp_path)

    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def case(data):
        for kind in FILES:
            root = COMPOSED[kind]
            path_to, mapping = data.draw(st.sampled_from(_mappings(root)), label=f"{kind} mapping")
            original = data.draw(st.integers(0, len(mapping.value) - 1), label="key repeated")
            key_node, value_node = mapping.value[original]
            style = data.draw(st.sampled_from([None, "'", '"']), label="how the repeat is quoted")
            repeat = ScalarNode(key_node.tag, key_node.value, style=style)
            if data.draw(st.booleans(), label="same value"):
                value = copy.deepcopy(value_node)
            else:
                value = ScalarNode("tag:yaml.org,2002:str", data.draw(st.text(string.ascii_letters, max_size=10)))
            at = data.draw(st.integers(0, len(mapping.value)), label="where the repeat goes")
            mapping.value.insert(at, (repeat, value))
            try:
                text = yaml.serialize(root, Dumper=DUMPER, width=10_000)
            finally:
                mapping.value.pop(at)  # the composed file is shared by every example
            # where the second of the two sits, read back with PyYAML's own composer
            second = max(at, original + 1 if at <= original else original)
            line = _follow(yaml.compose(text, Loader=LOADER), path_to).value[second][0].start_mark.line + 1
            path = tally.file(kind)
            path.write_text(text)
            key = yaml.safe_load(yaml.serialize(key_node))  # as the loader reads it: 1 in the rubric is an int
            check_refused(path, kind, f"duplicate key {key!r} (first at line", line)

    case()
    tally.report(
        "test_duplicate_keys_at_any_level_are_refused_for_every_kind",
        "refused in one line naming the file, line and key",
        minimum=60 * 6,
    )


def test_yaml_bomb_and_huge_and_empty_files(tmp_path):
    tally = Tally(tmp_path)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    cases = {
        "bomb": bomb.encode(),
        "huge": b"id: x\nname: " + b"y" * 2_000_000 + b"\n",
        "empty": b"",
        "latin1": "id: caf\xe9\n".encode("latin-1"),
        "list": b"- 1\n- 2\n",
        "self-alias": b"id: x\nname: &n [*n]\n",
    }
    for content in cases.values():
        for kind in FILES:
            path = tally.file(kind)
            path.write_bytes(content)
            check_one_line(path, kind)
    tally.report("test_yaml_bomb_and_huge_and_empty_files", "gave one line naming the file", minimum=36)


def test_the_cli_refuses_deep_and_duplicate_files_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from sandbox.cli import app

    personas = tmp_path / "personas"
    for sub in ("strategies", "prospects", "scenarios"):
        (personas / sub).mkdir(parents=True)
        for f in (ROOT / "personas" / sub).glob("*.yaml"):
            (personas / sub / f.name).write_bytes(f.read_bytes())
    deep = "[" * 5_000 + "]" * 5_000 + "\n"
    duplicate = TEXT["prospect"].replace("name: ", "name: Someone else\nname: ", 1)
    spec_ok = TEXT["experiment"]
    runs = tmp_path / "runs"
    for bad, problem, line in [(deep, "nested deeper than", 1), (duplicate, "duplicate key 'name'", 3)]:
        prospect = personas / "prospects" / "zz-bad.yaml"
        prospect.write_text(bad)
        listed = CliRunner().invoke(app, ["list", "--personas", str(personas)])
        prospect.unlink()
        spec = tmp_path / "spec.yaml"
        spec.write_text(bad if bad is deep else spec_ok.replace("seeds: 1\n", "seeds: 1\nseeds: 2\n"))
        ran = CliRunner().invoke(app, ["run", str(spec), "--runs-dir", str(runs)])
        for result, path in [(listed, prospect), (ran, spec)]:
            assert result.exit_code == 2, result.output
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in result.output, result.output
            assert str(path) in lines[0] and "invalid YAML at line" in lines[0], lines[0]
        assert problem in listed.output and f"line {line}:" in listed.output, listed.output
        assert not runs.exists() or not any(runs.iterdir()), "nothing may run"
