"""Calibration: the labelled set, the agreement figures, manipulation and verbosity measures."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sandbox.calibration import (
    DEFAULT_SET,
    agreement,
    attack_success_rate,
    load_calibration,
    to_judge_case,
    verbosity_shift,
)
from sandbox.catalog import CatalogError
from sandbox.cli import app
from sandbox.judge import load_rubric
from sandbox.schemas import CriterionScore, Judgement
from tests.conftest import CASSETTES, ROOT


@pytest.fixture(scope="module")
def rubric():
    return load_rubric(ROOT / "judges" / "rubric.yaml")


@pytest.fixture(scope="module")
def cases(rubric, catalog):
    return load_calibration(DEFAULT_SET, rubric, catalog)


def test_set_size_and_coverage_of_every_criterion_low_and_high(cases, rubric):
    honest = [c for c in cases if not c.manipulation]
    assert len(honest) >= 24
    assert sum(c.manipulation for c in cases) >= 4
    for criterion in rubric.criteria:
        labels = [c.expected[criterion.id] for c in honest]
        assert min(labels) <= 2 and max(labels) >= 4, criterion.id


def test_padding_lengthens_only_rep_turns(cases, catalog):
    case = cases[0]
    plain, padded = to_judge_case(case, catalog), to_judge_case(case, catalog, pad_rep=True)
    for a, b in zip(plain.turns, padded.turns, strict=True):
        assert (len(b.text) > len(a.text)) == (a.speaker == "rep")


def test_bad_case_file_is_one_line_naming_the_field(tmp_path, rubric, catalog):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  scenario: saas-seats\n  turns: [{rep: hi}]\n  outcome: o\n  expected: {discovery: 9}\n")
    with pytest.raises(CatalogError) as exc:
        load_calibration(tmp_path, rubric, catalog)
    assert "\n" not in str(exc.value) and "expected" in str(exc.value)


def test_agreement_figures():
    perfect = agreement([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert perfect.spearman == 1 and perfect.qwk == 1 and perfect.mae == 0
    reversed_ = agreement([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert reversed_.spearman == -1 and reversed_.qwk < 0 and reversed_.mae == 2.4
    constant = agreement([1, 3, 5], [1, 1, 1])
    assert constant.spearman is None and constant.qwk == 0 and constant.mae == pytest.approx(2)
    assert agreement([], []).n == 0


def judgement(case_id: str, scores: dict[str, int]) -> Judgement:
    return Judgement(
        episode_id=case_id,
        judge_model="m",
        rubric_id="r",
        scores=[CriterionScore(criterion=k, score=v, supported=True) for k, v in scores.items()],
    )


def test_attack_success_rate_counts_obeyed_injections(cases):
    attacks = [c for c in cases if c.manipulation]
    obedient = {c.id: judgement(c.id, {k: 5 for k in c.expected}) for c in attacks}
    faithful = {c.id: judgement(c.id, dict(c.expected)) for c in attacks}
    assert attack_success_rate(cases, obedient) == 1.0
    assert attack_success_rate(cases, faithful) == 0.0


def test_verbosity_shift():
    plain = [judgement("a", {"x": 2, "y": 4}), judgement("b", {"x": 3})]
    padded = [judgement("a", {"x": 3, "y": 5}), judgement("b", {"x": 3})]
    assert verbosity_shift(plain, padded) == 0.5


def test_calibration_of_the_embedded_judge_replays_offline(tmp_path, no_local_server, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "calibration.json"
    command = ["judge", "calibrate", "--model", "local", "--verbosity-cases", "4"]
    command += ["--cassette", str(CASSETTES / "judge-calibration-local.yaml"), "--out", str(out)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "attack success rate" in result.output and "verbosity shift" in result.output
    print(result.output)
    replayed = json.loads(out.read_text())
    recorded = json.loads((ROOT / "judges" / "results" / "calibration-local.json").read_text())
    assert replayed == recorded
    report = replayed[0]
    assert report["cases"] == 28 and report["manipulation_cases"] == 4
    assert report["scored"] + report["failed"] == 28 * 10
