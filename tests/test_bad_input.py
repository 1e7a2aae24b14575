"""Bad input, generated: every malformed YAML file gives one line naming the file (and the field
where there is one), never a traceback, never a partial run."""

from __future__ import annotations

import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.catalog import CatalogError, load_model
from sandbox.experiment import ExperimentSpec
from sandbox.schemas import Prospect, Rubric, Scenario, Strategy
from tests.conftest import ROOT

MODELS = {
    "strategies": Strategy,
    "prospects": Prospect,
    "scenarios": Scenario,
}
VALID = {
    "strategy": yaml.safe_load((ROOT / "personas/strategies/humble-equal.yaml").read_text()),
    "prospect": yaml.safe_load((ROOT / "personas/prospects/skeptic.yaml").read_text()),
    "scenario": yaml.safe_load((ROOT / "personas/scenarios/saas-seats.yaml").read_text()),
    "rubric": yaml.safe_load((ROOT / "judges/rubric.yaml").read_text()),
    "experiment": yaml.safe_load((ROOT / "experiments/quickstart.yaml").read_text()),
}
SCHEMAS = {
    "strategy": Strategy,
    "prospect": Prospect,
    "scenario": Scenario,
    "rubric": Rubric,
    "experiment": ExperimentSpec,
}
TRIED = {"n": 0}

junk_values = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)  # fmt: skip


def check_one_line(path: Path, schema: type) -> None:
    TRIED["n"] += 1
    try:
        load_model(path, schema)
    except CatalogError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert str(path) in message, message
    # a file that happens to be valid is fine too: what matters is no other exception escapes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_mutated_fields(tmp_path_factory, kind, data):
    document = dict(VALID[kind])
    key = data.draw(st.sampled_from(sorted(document)))
    action = data.draw(st.sampled_from(["drop", "junk", "unknown-key"]))
    if action == "drop":
        document.pop(key)
    elif action == "junk":
        document[key] = data.draw(junk_values)
    else:
        document[data.draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))] = 1
    path = tmp_path_factory.mktemp("y") / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(document))
    check_one_line(path, SCHEMAS[kind])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(VALID)), raw=st.binary(max_size=300))
def test_arbitrary_bytes(tmp_path_factory, kind, raw):
    path = tmp_path_factory.mktemp("b") / f"{kind}.yaml"
    path.write_bytes(raw)
    check_one_line(path, SCHEMAS[kind])


def test_yaml_bomb_and_huge_and_empty_files(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    cases = {
        "bomb.yaml": bomb.encode(),
        "huge.yaml": b"id: x\nname: " + b"y" * 2_000_000 + b"\n",
        "empty.yaml": b"",
        "latin1.yaml": "id: caf\xe9\n".encode("latin-1"),
        "list.yaml": b"- 1\n- 2\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for schema in SCHEMAS.values():
            check_one_line(path, schema)


def test_report_how_many_cases_were_tried():
    print(f"\nbad-input cases tried: {TRIED['n']} (each gave one line naming the file, or loaded)")
    assert TRIED["n"] >= 300
