"""``--help`` lists a flag without a value placeholder: ``--record <bool>`` reads as if it took a value."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from sandbox.cli import app

COMMANDS = ["", *typer.main.get_command(app).commands]  # the top level and every command, new ones too
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}  # one row per option, nothing folded


def help_text(command: str) -> str:
    result = CliRunner().invoke(app, [*command.split(), "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def option_row(text: str, flag: str) -> str:
    rows = [line for line in text.splitlines() if re.search(rf"(^|\s){re.escape(flag)}(\s|$)", line)]
    assert rows, f"{flag} missing from help:\n{text}"
    return rows[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_boolean_placeholder_in_any_help(command: str) -> None:
    text = help_text(command)
    assert "<bool>" not in text
    assert "BOOLEAN" not in text


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("", "--version"),
        ("", "--help"),
        ("negotiate", "--record"),
        ("negotiate", "--judge"),
        ("judge", "--record"),
        ("run", "--record"),
        ("run", "--no-cache"),
        ("run", "--retry-failed"),
        ("report", "--screenshot"),
    ],
)
def test_flag_row_shows_no_type(command: str, flag: str) -> None:
    row = option_row(help_text(command), flag)
    assert "<" not in row, row


@pytest.mark.parametrize(
    ("command", "flag", "placeholder"),
    [("run", "--resume", "<path>"), ("negotiate", "--seed", "<int>"), ("negotiate", "--model", "<str>")],
)
def test_options_that_take_a_value_keep_their_type(command: str, flag: str, placeholder: str) -> None:
    assert placeholder in option_row(help_text(command), flag)
