from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.catalog import CatalogError, load_catalog
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
