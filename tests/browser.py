"""A run's report served on loopback and opened in headless Chromium (Debian's, not Playwright's download),
for the tests that check what a reader of the page sees."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.report import CHROMIUM_ARGS, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def report_page(folder: Path) -> Iterator[Any]:
    """Write the folder's report, serve it on 127.0.0.1 and yield a Playwright page showing report.html.
    In CI a missing Chromium fails the test: a skipped browser test must not pass for a checked page."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/setup.sh test installs it (apt-get install chromium)")
        pytest.skip("chromium not installed (scripts/setup.sh test installs it)")
    from playwright.sync_api import sync_playwright

    write_report(folder)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/report.html")
            yield page
            browser.close()
    finally:
        server.shutdown()


@contextlib.contextmanager
def file_page(html: Path, width: int = 1400) -> Iterator[Any]:
    """A Playwright page showing one self-contained HTML file (a pack) in headless Chromium; no server:
    the file must need nothing else. A missing Chromium fails in CI and skips elsewhere, as above."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/setup.sh test installs it (apt-get install chromium)")
        pytest.skip("chromium not installed (scripts/setup.sh test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(html.resolve().as_uri())
            yield page
        finally:
            browser.close()
