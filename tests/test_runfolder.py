"""The one reader of a run folder, and the table it gives: latest line per episode, failures as nulls."""

from __future__ import annotations

import pandas as pd
import pytest

from sandbox.results import EpisodeResult
from sandbox.runfolder import NotARunFolderError, RunFolder
from sandbox.table import OUTCOME_COLUMNS, export, results_frame
from tests.handmade import episode, write_run


def test_the_last_readable_line_per_episode_wins_in_order_of_first_appearance(tmp_path):
    first_try = episode("eager-to-please", 1, status="failed", error="TimeoutError: the model took too long")
    other = episode("assertive-consultant", 1)
    retry = episode("eager-to-please", 1, scores={"discovery": 4})
    walk = episode("eager-to-please", 2, status="walk_away")
    run = RunFolder(write_run(tmp_path / "run", [first_try, other, retry, walk]))
    with run.episodes_path.open("a") as handle:  # a later retry of `other`, corrupt; then a torn line
        handle.write(other.model_dump_json()[:-1] + ',"status": "maybe"}\n')
        handle.write(walk.model_dump_json()[:50])

    latest = list(run.latest())
    assert [r.episode_id for r in latest] == [first_try.episode_id, other.episode_id, walk.episode_id]
    assert [r.status for r in latest] == ["ok", "ok", "ok"]  # the retry superseded the failure
    assert latest[0].judgements[0].scored == {"discovery": 4}
    assert run.latest_ids() == [r.episode_id for r in latest]
    assert len(list(run.history())) == 4  # every readable line, the failure included
    assert [r.episode_id for r in run.latest(ids={walk.episode_id, "no-such-id"})] == [walk.episode_id]


def test_latest_parses_only_the_winning_lines(tmp_path, monkeypatch):
    """Two passes: the first finds ids without parsing, so a retried episode is parsed once, not per line."""
    results = [episode("eager-to-please", seed, status="failed", error="x") for seed in range(3)]
    results += [episode("eager-to-please", seed) for seed in range(3)]
    run = RunFolder(write_run(tmp_path / "run", results))
    parsed = []
    original = EpisodeResult.model_validate_json.__func__

    def counting(cls, data, **kwargs):
        parsed.append(1)
        return original(cls, data, **kwargs)

    monkeypatch.setattr(EpisodeResult, "model_validate_json", classmethod(counting))
    assert [r.status for r in run.latest()] == ["ok", "ok", "ok"]
    assert len(parsed) == 3  # of 6 lines


def test_not_a_run_folder_is_one_line_naming_the_folder(tmp_path):
    assert RunFolder(tmp_path / "missing").problem() == f"{tmp_path / 'missing'}: no such folder; not a run folder"
    empty = RunFolder(tmp_path)
    assert not empty.is_run()
    with pytest.raises(NotARunFolderError, match=r"no manifest\.json; not a run folder$"):
        empty.manifest()
    run = RunFolder(write_run(tmp_path / "run", [episode("eager-to-please")]))
    assert run.is_run() and run.require() is run and run.manifest()["run_id"] == "run"
    run.manifest_path.write_text("{not json")
    with pytest.raises(NotARunFolderError) as caught:
        run.manifest()
    assert "manifest.json: unreadable manifest" in str(caught.value) and "\n" not in str(caught.value)
    names = [run.episodes_path, run.manifest_path, run.table_path, run.report_md_path, run.report_html_path,
             run.log_path, run.examples_dir, run.lock_path]  # fmt: skip
    assert [p.name for p in names] == ["episodes.jsonl", "manifest.json", "results.parquet", "report.md",
                                       "report.html", "run.log", "examples", ".lock"]  # fmt: skip


def test_failed_episodes_hold_null_in_every_outcome_column_through_parquet(tmp_path):
    results = [
        episode("eager-to-please", 1),  # a deal
        episode("eager-to-please", 2, status="walk_away"),
        episode("eager-to-please", 3, status="failed", error="ModelCallError: junk twice"),
    ]
    assert results[2].metrics is not None and results[2].metrics.deal is False  # the partial transcript's
    run = RunFolder(write_run(tmp_path / "run", results))
    table = pd.read_parquet(export(run))
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1
    assert set(OUTCOME_COLUMNS) <= set(table.columns)
    assert all(failed[column].isna().all() for column in OUTCOME_COLUMNS)
    assert table["m_deal"].mean() == 0.5  # one deal of two finished; the failure is not a no-deal
    assert table["m_turns"].sum() == 4 and str(table["m_deal"].dtype) == "boolean"
    assert str(table["m_turns"].dtype) == "Int64" and str(table["m_discount_from_list"].dtype) == "Float64"


def test_a_run_where_every_episode_failed_still_has_its_outcome_columns(tmp_path):
    run = RunFolder(write_run(tmp_path / "run", [episode("eager-to-please", status="failed", error="boom")]))
    table = results_frame(run)
    assert table["m_deal"].isna().all() and pd.isna(table["m_deal"].mean())
