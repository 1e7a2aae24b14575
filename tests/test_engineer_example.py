"""examples/engineer: an outside project that adds its own strategy and tests it with the plugin on
committed cassettes. Its suite runs here, offline, against the installed sandbox; a prompt edit makes
`sandbox cassettes check` call its cassettes stale, naming the field that changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from typer.testing import CliRunner

from sandbox.cli import app
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "engineer"


def offline_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SANDBOX_RECORD", "SANDBOX_CASSETTE_CHECK")}


def test_the_example_project_passes_on_its_committed_cassettes():
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=EXAMPLE, env=offline_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_a_prompt_edit_makes_the_examples_cassettes_stale_naming_the_system_prompt(tmp_path, monkeypatch):
    project = tmp_path / "engineer"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    strategy = project / "personas" / "strategies" / "patient-closer.yaml"
    strategy.write_text(strategy.read_text().replace("Ask one question at a time", "Ask two questions at a time"))
    for name in ("SANDBOX_RECORD", "SANDBOX_CASSETTE_CHECK"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["cassettes", "check", str(project / "cassettes")])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    stale = [line for line in lines if line.startswith("stale ")]
    assert len(stale) == 3, result.output  # every test plays the edited strategy
    for line in stale:
        assert "messages[0] (the system prompt): from character" in line
        assert "'…unting on reflex. - Ask one question at a time" in line and "Ask two questions at a time" in line
    assert lines[-1] == "3 stale"
