"""Shipped content: a wheel carries every content file, and an installed package finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sandbox import content
from tests.conftest import ROOT

CONTENT_DIRS = ("personas", "judges", "experiments")


def test_every_content_file_is_a_data_file_of_the_wheel():
    """A persona, case or spec added later without a data-files line would be missing from installs."""
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = set()
    for target, patterns in data_files.items():
        assert target.startswith(str(content.SHARE))
        for pattern in patterns:
            for path in ROOT.glob(pattern):
                assert target == str(content.SHARE / path.parent.relative_to(ROOT))  # same place under share/
                shipped.add(path.relative_to(ROOT))
    on_disk = {p.relative_to(ROOT) for d in CONTENT_DIRS for p in (ROOT / d).rglob("*") if p.is_file()}
    assert on_disk and on_disk == shipped


def test_an_installed_package_finds_the_share_folder_of_its_prefix(tmp_path):
    package = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages" / "sandbox"
    package.mkdir(parents=True)
    assert content.content_root(package) == package.parent  # nothing shipped anywhere: the checkout's path
    share = tmp_path / "prefix" / content.SHARE
    (share / "personas").mkdir(parents=True)
    assert content.content_root(package) == share
    (package.parent / "personas").mkdir()  # a checkout beside the package wins
    assert content.content_root(package) == package.parent


def test_shipped_experiments_by_name_or_project_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder with no experiments/ of its own
    assert content.shipped_experiment(Path("quickstart")) == content.CONTENT_ROOT / "experiments" / "quickstart.yaml"
    assert content.shipped_experiment(Path("experiments/quickstart.yaml")).is_file()
    assert content.shipped_experiment(Path("nope")) == Path("nope")  # the loader's error names what was asked
    mine = tmp_path / "quickstart"
    mine.write_text("id: mine\n")
    assert content.shipped_experiment(Path("quickstart")) == Path("quickstart")  # the user's own file wins


def test_version_flag_names_the_installed_version():
    from typer.testing import CliRunner

    from sandbox import __version__
    from sandbox.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"negotiation-sandbox {__version__}"
    assert __version__ != "0.0.0+source"  # the package metadata was found: it is installed, not just on the path
