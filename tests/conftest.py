from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Where the environment turns bytecode caches off (PYTHONDONTWRITEBYTECODE, as on this project's
# machines), every process the suite starts (each pytest-xdist worker, each `sandbox` process a test
# runs) compiled every module of the package and the tests, and pytest rewrote every test's asserts,
# again: about 5 s of CPU per process. The caches go to the git-ignored __pycache__ folders; the
# workers, started after this file is read, inherit the setting.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

from sandbox.cassettes import record_mode_from_env, use_cassette  # noqa: E402
from sandbox.catalog import Catalog, load_catalog  # noqa: E402
from sandbox.models import retry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"

# The longest test files, longest first (python bench/suite_time.py): run first, so that pytest-xdist,
# handing out whole files in this order (--dist loadfile --no-loadscope-reorder), does not start one
# of them last while the other worker sits idle. Order only; no test depends on it.
LONGEST_FIRST = [
    "test_ray.py",
    "test_experiment.py",
    "test_planted.py",
    "test_faults.py",
    "test_bad_input.py",
    "test_report.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file, and among the rest, is kept


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(ROOT / "personas")


@pytest.fixture(autouse=True)
def servers_unheard() -> Iterator[None]:
    """Each test starts knowing of no server that answered: the model layer remembers, per process, the
    api_bases that answered (a refused connection there is a restart, retried), and a replay of
    127.0.0.1:9 in one test made the same dead address a retried restart in the next one on that worker."""
    from sandbox.models import call

    call._ANSWERED.clear()
    yield
    call._ANSWERED.clear()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same retry policy, millisecond back-off (jitter too: tenacity adds up to 1 s by default), so fault
    tests stay quick."""
    monkeypatch.setattr(
        retry,
        "RETRY_POLICY_FACTORY",
        lambda: retry.retry_policy(max_attempts=4, max_seconds=10, initial_wait=0.01, retry_after_cap=0.2, jitter=0.01),
    )


@pytest.fixture
def no_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if an offline test tries to start the embedded server."""
    from sandbox import local_server

    if record_mode_from_env() != "none":
        return  # recording needs the real server

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this offline test must not start the embedded model server")

    monkeypatch.setattr(local_server.LocalServer, "start", refuse)


@contextlib.contextmanager
def cassette(name: str) -> Iterator[object]:
    """Replay ``cassettes/<name>``; set SANDBOX_RECORD=1 to record it instead."""
    with use_cassette(CASSETTES / name, record_mode_from_env()) as recorded:
        yield recorded


def recording() -> bool:
    return record_mode_from_env() != "none"
