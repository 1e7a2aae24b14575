"""Command line: thin wrappers that parse options, call the pipeline, and render with rich.

One module per command (or command group), each registering on the one ``app`` from
:mod:`sandbox.cli.common`; importing them here is what registers them, and the import order is the
order ``sandbox --help`` lists them in.
"""

from __future__ import annotations

# isort: off
from sandbox.cli import listing, negotiate, judge, run, results, branch  # noqa: F401  (registers the commands)
from sandbox.cli import practice  # noqa: F401
from sandbox.cli.cassettes import cassettes_app
from sandbox.cli.models import models_app

# isort: on
from sandbox.cli.common import app, fail

app.add_typer(models_app, name="models")
app.add_typer(cassettes_app, name="cassettes")

__all__ = ["app", "fail"]
