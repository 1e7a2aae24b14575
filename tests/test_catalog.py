from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

from sandbox.catalog import MAX_YAML_DEPTH, CatalogError, load_catalog, read_yaml
from tests.conftest import ROOT

REQUIRED_STRATEGIES = {
    "eager-to-please",
    "assertive-consultant",
    "connection",
    "value-redirect",
    "humble-equal",
    "differentiated-51-49",
}


def test_shipped_content_loads_and_cites_sources(catalog):
    assert set(catalog.strategies) >= REQUIRED_STRATEGIES
    assert len(catalog.prospects) >= 6
    assert len(catalog.scenarios) >= 3
    for item in [*catalog.strategies.values(), *catalog.prospects.values()]:
        assert item.sources, item.id
        assert all(s.title and s.author for s in item.sources)
    for scenario in catalog.scenarios.values():
        assert 0 < scenario.rep_private.floor_price <= scenario.list_price


def test_every_prospect_hides_what_the_rep_must_discover(catalog):
    for prospect in catalog.prospects.values():
        private = prospect.private
        assert private.real_need and private.behaviour
        assert private.budget_ratio <= private.walk_away_ratio
        # The public profile must not give the private figures away.
        assert "budget" not in prospect.public_profile.lower()


def copy_catalog(tmp_path: Path) -> Path:
    root = tmp_path / "personas"
    for sub in ("strategies", "prospects", "scenarios"):
        (root / sub).mkdir(parents=True)
        for f in (ROOT / "personas" / sub).glob("*.yaml"):
            (root / sub / f.name).write_bytes(f.read_bytes())
    return root


def one_line(exc: pytest.ExceptionInfo[CatalogError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_malformed_yaml_names_file_and_line(tmp_path):
    root = copy_catalog(tmp_path)
    bad = root / "prospects" / "skeptic.yaml"
    bad.write_text("id: skeptic\nname: [unclosed\n")
    with pytest.raises(CatalogError) as exc:
        load_catalog(root)
    message = one_line(exc)
    assert str(bad) in message and "invalid YAML" in message and "line" in message


def test_wrong_type_names_the_field(tmp_path):
    root = copy_catalog(tmp_path)
    path = root / "scenarios" / "saas-seats.yaml"
    path.write_text(path.read_text().replace("list_price: 24000", "list_price: lots"))
    with pytest.raises(CatalogError) as exc:
        load_catalog(root)
    message = one_line(exc)
    assert str(path) in message and "'list_price'" in message


def test_missing_nested_field_names_the_path(tmp_path):
    root = copy_catalog(tmp_path)
    path = root / "prospects" / "price-haggler.yaml"
    path.write_text(path.read_text().replace("  walk_away_ratio: 0.92\n", ""))
    with pytest.raises(CatalogError) as exc:
        load_catalog(root)
    assert "'private.walk_away_ratio'" in one_line(exc)


def test_empty_and_non_utf8_files(tmp_path):
    root = copy_catalog(tmp_path)
    empty = root / "strategies" / "empty.yaml"
    empty.write_text("")
    with pytest.raises(CatalogError, match="file is empty"):
        load_catalog(root)
    empty.write_bytes(b"id: x\nname: \xff\xfe\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(root)


def test_duplicate_id_is_refused(tmp_path):
    root = copy_catalog(tmp_path)
    src = root / "strategies" / "humble-equal.yaml"
    (root / "strategies" / "zz-copy.yaml").write_text(src.read_text())
    with pytest.raises(CatalogError, match="duplicate id 'humble-equal'"):
        load_catalog(root)


def test_unknown_id_lists_the_known_ones(catalog):
    with pytest.raises(CatalogError) as exc:
        catalog.prospect("nobody")
    message = one_line(exc)
    assert "unknown prospect 'nobody'" in message and "price-haggler" in message


def test_floor_above_list_price_is_refused(tmp_path):
    root = copy_catalog(tmp_path)
    path = root / "scenarios" / "home-espresso.yaml"
    path.write_text(path.read_text().replace("floor_price: 1180", "floor_price: 5000"))
    with pytest.raises(CatalogError, match="home-espresso.yaml"):
        load_catalog(root)


def test_a_file_nested_thousands_deep_is_one_line_not_a_recursion_error(tmp_path):
    root = copy_catalog(tmp_path)
    bad = root / "prospects" / "deep.yaml"
    bad.write_text("id: deep\nname: " + "[" * 5_000 + "]" * 5_000 + "\n")
    with pytest.raises(CatalogError) as exc:
        load_catalog(root)
    assert one_line(exc) == f"{bad}: invalid YAML at line 2: nested deeper than {MAX_YAML_DEPTH} levels"


def _alias_chain(links: int) -> str:
    """Each anchor wraps the one before in a list: nesting built from aliases, not brackets."""
    return "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, links))


def _block_mapping(levels: int) -> str:
    return "".join("  " * i + "k:\n" for i in range(levels - 1)) + "  " * (levels - 1) + "k: x\n"


def _block_then_flow(flow: int) -> str:
    return "- " * 50 + "[" * flow + "]" * flow + "\n"


@pytest.mark.parametrize(
    ("at_limit", "one_more", "line"),
    [
        pytest.param("[" * 100 + "]" * 100, "[" * 101 + "]" * 101, 1, id="flow"),
        pytest.param("- " * 100 + "x\n", "- " * 101 + "x\n", 1, id="block-sequence"),
        pytest.param(_block_mapping(100), _block_mapping(101), 101, id="block-mapping"),
        # neither the block nor the flow part reaches the limit alone: the levels are counted together
        pytest.param(_block_then_flow(50), _block_then_flow(51), 1, id="block-then-flow"),
        # a0 sits 101 levels down, reached through 100 aliases
        pytest.param(_alias_chain(99), _alias_chain(100), 1, id="alias-chain"),
    ],
)
def test_the_nesting_limit_is_exact_however_the_levels_are_written(tmp_path, at_limit, one_more, line):
    assert MAX_YAML_DEPTH == 100
    path = tmp_path / "nested.yaml"
    path.write_text(at_limit)
    assert read_yaml(path)
    path.write_text(one_more)
    with pytest.raises(CatalogError) as exc:
        read_yaml(path)
    assert one_line(exc) == f"{path}: invalid YAML at line {line}: nested deeper than 100 levels"


def test_an_anchor_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("id: x\nname: &n [1, *n]\n")
    with pytest.raises(CatalogError) as exc:
        read_yaml(path)
    assert one_line(exc) == (
        f"{path}: invalid YAML at line 2: nested deeper than 100 levels (a node contains an alias to itself)"
    )


def test_a_repeated_key_names_the_key_and_both_lines(tmp_path):
    root = copy_catalog(tmp_path)
    path = root / "prospects" / "skeptic.yaml"
    text = path.read_text()
    path.write_text(text.replace("name: ", "name: Someone else\nname: ", 1))
    with pytest.raises(CatalogError) as exc:
        load_catalog(root)
    assert one_line(exc) == f"{path}: invalid YAML at line 3: duplicate key 'name' (first at line 2)"
    nested = text.replace("  walk_away_ratio: 1.0\n", "  walk_away_ratio: 1.0\n  budget_ratio: 0.1\n")
    path.write_text(nested)
    line = nested.splitlines().index("  budget_ratio: 0.1") + 1
    with pytest.raises(CatalogError) as exc:
        load_catalog(root)
    assert one_line(exc) == f"{path}: invalid YAML at line {line}: duplicate key 'budget_ratio' (first at line 9)"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("{true: 1, True: 2}", "True"),  # the same key once loaded, however it is spelled
        ("{1: a, 0x1: b}", "1"),
        ("{name: a, 'name': b}", "'name'"),
    ],
)
def test_keys_are_compared_as_loaded(tmp_path, text, key):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as exc:
        read_yaml(path)
    assert one_line(exc) == f"{path}: invalid YAML at line 1: duplicate key {key} (first at line 1)"


def test_merge_keys_may_still_be_overridden_but_not_repeated(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nmore: {<<: *b, x: 3}\nother:\n  <<: [*b, {z: 0}]\n  y: 4\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "more": {"x": 3, "y": 2}, "other": {"x": 1, "y": 4, "z": 0}}
    path.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 4\n  y: 5\n")
    with pytest.raises(CatalogError) as exc:
        read_yaml(path)
    assert one_line(exc) == f"{path}: invalid YAML at line 5: duplicate key 'y' (first at line 4)"


def test_the_loader_needs_little_stack_however_the_file_nests(tmp_path):
    # A mapping and an indentless sequence per line push one indent for two levels, and flow
    # brackets count apart from indents: about 300 levels get past the scanner's own counts, and
    # the recursive composer must stop itself at the limit, not after all of them.
    lines = ["k:"] + ["  " * j + "- k:" for j in range(99)]
    path = tmp_path / "nested.yaml"
    path.write_text("\n".join(lines) + " " + "[" * 99 + "]" * 99 + "\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 450)
    try:
        with pytest.raises(CatalogError) as exc:
            read_yaml(path)
    finally:
        sys.setrecursionlimit(limit)
    assert one_line(exc) == f"{path}: invalid YAML at line 51: nested deeper than 100 levels"
