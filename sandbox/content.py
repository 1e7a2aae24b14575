"""Where the shipped content lives: personas/, judges/ and experiments/.

In a source checkout (and an editable install) they sit beside the package. A wheel installs them
as data files under ``<prefix>/share/negotiation-sandbox/``, so `pip install negotiation-sandbox`
followed by `sandbox list` works from any folder. A user's own folders in the working directory
still win over both (see ``cli.project_path``).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

SHARE = Path("share") / "negotiation-sandbox"
PACKAGE = Path(__file__).resolve().parent


def candidates(package: Path = PACKAGE) -> list[Path]:
    """The checkout beside the package, then share/ of the prefix the package is installed under
    (<prefix>/lib/pythonX.Y/site-packages on POSIX, <prefix>/Lib/site-packages on Windows), then
    the interpreter's own data prefix."""
    installed = [package.parents[i] / SHARE for i in (3, 2) if len(package.parents) > i]
    schemes = [Path(sysconfig.get_paths()["data"]) / SHARE, Path(sys.prefix) / SHARE]
    return [package.parent, *installed, *schemes]


def content_root(package: Path = PACKAGE) -> Path:
    """The first place holding personas/; the checkout's when none does, so errors name that path."""
    for candidate in candidates(package):
        if (candidate / "personas").is_dir():
            return candidate
    return package.parent


def shipped_experiment(path: Path) -> Path:
    """A spec path as given when it exists; else a shipped spec, by name (`quickstart`) or by its path
    in the project (`experiments/quickstart.yaml`), so the README's commands work from any folder."""
    if path.exists() or path.is_absolute():
        return path
    shipped = CONTENT_ROOT / "experiments"
    options = [shipped / path.name, shipped / f"{path.name}.yaml"] if len(path.parts) == 1 else [CONTENT_ROOT / path]
    return next((option for option in options if option.is_file()), path)


CONTENT_ROOT = content_root()
