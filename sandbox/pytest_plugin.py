"""A pytest plugin for projects built on the sandbox: tests that replay recorded model traffic.

Loaded by pytest through the package's ``pytest11`` entry point (nothing in the sandbox imports it).
Each test's traffic lives in ``cassettes/<test module>/<test name>.yaml`` under the rootdir, a method's
in ``<class>.<test name>.yaml`` (two classes' ``test_x`` are two tests); a test's second run of an
episode or experiment gets ``<test name>-2.yaml``, and so on. Tests replay by
default, offline; ``--sandbox-record`` (or ``SANDBOX_RECORD=1``) records them again from scratch,
keys scrubbed, and notes in each cassette which test recorded it, which is how
``sandbox cassettes check`` knows what to re-run.

Fixtures:

- ``sandbox_catalog``: the shipped strategies, prospects and scenarios plus the project's own
  ``personas/`` folder (ini ``sandbox_personas``); ``sandbox_rubric``: the project's
  ``judges/rubric.yaml`` (ini ``sandbox_rubric``), else the shipped one.
- ``sandbox_episode(strategy, prospect, scenario, ...)``: one episode against the test's cassette,
  an :class:`~sandbox.results.EpisodeResult`.
- ``sandbox_experiment(spec)``: a small experiment (a spec, its dict or its YAML path) through the
  ordinary runner, an :class:`ExperimentResults`.
- ``sandbox_cassette``: the test's cassette itself; the ``sandbox_cassette`` marker wraps a whole
  test that sends its own requests (an agent of your own) in it.

A request the cassette does not hold fails the test at once, naming the cassette, the request, the
nearest recorded request and the first field of the body that differs.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox.catalog import Catalog
    from sandbox.results import EpisodeResult
    from sandbox.runner import RunSummary
    from sandbox.schemas import ModelSettings, Rubric

RECORD_FLAG = "--sandbox-record"
MARKER = "sandbox_cassette"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandbox", "negotiation-sandbox cassettes")
    group.addoption(
        RECORD_FLAG,
        action="store_true",
        default=False,
        help="Record the sandbox cassettes of the selected tests again (needs a model; the embedded one works).",
    )
    parser.addini("sandbox_cassettes", "Folder of the tests' cassettes, under the rootdir.", default="cassettes")
    parser.addini("sandbox_personas", "The project's personas folder, added to the shipped ones.", default="personas")
    parser.addini("sandbox_rubric", "The project's rubric, instead of the shipped one.", default="judges/rubric.yaml")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name=None): replay (or, with {RECORD_FLAG}, record) the test's model traffic from "
        "cassettes/<module>/<name or test name>.yaml",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A cassette miss raised inside a test (its own client's request, under the marker) fails it
    with the sandbox's one line (the cassette, the request, the nearest recording, what differs)
    instead of vcrpy's page."""
    try:
        return (yield)
    except Exception as exc:
        if type(exc).__name__ != "CannotOverwriteExistingCassetteException" and "cassette" not in str(exc):
            raise
        from sandbox.cassettes import miss_from_exception
        from sandbox.models.errors import cassette_miss_detail

        detail = cassette_miss_detail(exc)
        if detail is None:
            raise
        _REPORTED.extend(m for m in [miss_from_exception(exc)] if m is not None)
    pytest.fail(f"cassette miss: {detail}; {_AGAIN}", pytrace=False)  # outside the handler: vcrpy's page unchained


_REPORTED: list[Any] = []  # misses a test's failure already named (its cassette's teardown does not again)


_AGAIN = f"record it again with `pytest {RECORD_FLAG}` if the change is meant"


def recording(config: pytest.Config) -> bool:
    """Record rather than replay: the flag or SANDBOX_RECORD, never under ``sandbox cassettes check``."""
    from sandbox.cassettes import CHECK_ENV, record_mode_from_env

    if os.environ.get(CHECK_ENV):
        return False
    return bool(config.getoption(RECORD_FLAG)) or record_mode_from_env() != "none"


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "cassette"


def _test_name(node: pytest.Item) -> str:
    """The test's node id less its module: ``test_x[a]`` for a function, ``TestA.test_x[a]`` for a method."""
    classes = [n.name for n in node.listchain() if isinstance(n, pytest.Class)]
    return ".".join([*classes, node.name])


@dataclass
class SandboxCassette:
    """The cassettes of one test: where they are, whether they are recorded, and the miss check."""

    path: Path
    record: bool
    test: str  # the node id
    rootdir: Path
    uses: int = 0

    def next_path(self) -> Path:
        """The cassette for the test's next episode or experiment (the first: ``path``)."""
        self.uses += 1
        return self.path if self.uses == 1 else self.path.with_name(f"{self.path.stem}-{self.uses}.yaml")

    @contextlib.contextmanager
    def around(self, path: Path) -> Iterator[Path]:
        """Around one use of ``path``: a recording starts from an empty cassette (the old one comes back
        if nothing was recorded) and notes the recording test in it; a replay fails the test at once on
        a request the cassette does not hold."""
        from sandbox.cassettes import MISSES

        if not self.record and not path.exists():
            pytest.fail(f"cassette {path} does not exist: record it with `pytest {RECORD_FLAG}`", pytrace=False)
        first = len(MISSES)
        previous = path.with_name(path.name + ".previous")
        if self.record and path.exists():
            path.replace(previous)
        try:
            yield path
        finally:
            if self.record:
                if path.exists():
                    previous.unlink(missing_ok=True)
                    self._note_recorder(path)
                elif previous.exists():
                    previous.replace(path)
        misses = [m for m in MISSES[first:] if Path(m.cassette) == path and not any(m is r for r in _REPORTED)]
        if misses:
            more = f" (+{len(misses) - 1} more)" if len(misses) > 1 else ""
            pytest.fail(f"cassette miss: {misses[0].line()}{more}; {_AGAIN}", pytrace=False)

    def _note_recorder(self, path: Path) -> None:
        from sandbox.cassettes import read_cassette, write_cassette

        requests, responses, metadata = read_cassette(path)
        rootdir = os.path.relpath(self.rootdir, path.parent)
        metadata["recorded_by"] = {"test": self.test, "rootdir": Path(rootdir).as_posix()}
        write_cassette(path, requests, responses, metadata)

    @contextlib.contextmanager
    def replay(self) -> Iterator[Any]:
        """The test's own requests inside the block, replayed from (or recorded to) its next cassette."""
        from sandbox.cassettes import use_cassette

        with self.around(self.next_path()) as path, use_cassette(path, "once" if self.record else "none") as cassette:
            yield cassette


@pytest.fixture
def sandbox_cassette(request: pytest.FixtureRequest) -> SandboxCassette:
    """The test's cassette: ``cassettes/<test module>/<[class.]test name>.yaml`` (the marker's name
    instead, if given)."""
    config = request.config
    marker = request.node.get_closest_marker(MARKER)
    name = (marker.args[0] if marker and marker.args else None) or (marker.kwargs.get("name") if marker else None)
    folder = Path(config.rootpath) / config.getini("sandbox_cassettes") / _file_name(request.path.stem)
    path = folder / f"{_file_name(name or _test_name(request.node))}.yaml"
    return SandboxCassette(path=path, record=recording(config), test=request.node.nodeid, rootdir=config.rootpath)


@pytest.fixture(autouse=True)
def _sandbox_cassette_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``sandbox_cassette`` runs inside its cassette from start to end."""
    if request.node.get_closest_marker(MARKER) is None:
        yield
        return
    with request.getfixturevalue("sandbox_cassette").replay():
        yield


def _project_path(config: pytest.Config, ini: str) -> Path | None:
    path = Path(config.rootpath) / config.getini(ini)
    return path if path.exists() else None


@pytest.fixture(scope="session")
def sandbox_catalog(pytestconfig: pytest.Config) -> Catalog:
    """The shipped content plus the project's own ``personas/`` (strategies/, prospects/, scenarios/)."""
    from sandbox.catalog import DEFAULT_ROOT, load_catalog

    own = _project_path(pytestconfig, "sandbox_personas")
    extra = [own] if own is not None and own.resolve() != DEFAULT_ROOT.resolve() else []
    return load_catalog(DEFAULT_ROOT, extra=extra)


@pytest.fixture(scope="session")
def sandbox_rubric(pytestconfig: pytest.Config) -> Rubric:
    """The project's ``judges/rubric.yaml`` if it has one, else the shipped rubric."""
    from sandbox.judge import DEFAULT_RUBRIC, load_rubric

    return load_rubric(_project_path(pytestconfig, "sandbox_rubric") or DEFAULT_RUBRIC)


def _settings(model: str | ModelSettings) -> ModelSettings:
    from sandbox.schemas import ModelSettings

    return model if isinstance(model, ModelSettings) else ModelSettings(model=model)


PlayEpisode = Callable[..., "EpisodeResult"]


@pytest.fixture
def sandbox_episode(sandbox_cassette: SandboxCassette, sandbox_catalog: Catalog, sandbox_rubric: Rubric) -> PlayEpisode:
    """``play(strategy, prospect, scenario, *, seed=1, max_turns=4, opener="rep", model="local",
    judges=(), rubric=None, catalog=None, **episode_fields) -> EpisodeResult``: one episode through the
    sandbox's own pipeline (negotiate, measure, and judge when ``judges`` are given), its traffic
    replayed from the test's cassette. ``model`` plays both sides unless ``rep_model`` or
    ``prospect_model`` say otherwise; a failed episode is returned as such (its ``error`` says why),
    except a cassette miss, which fails the test."""
    from sandbox.profiles import EMBEDDED_ID

    def play(
        strategy: str,
        prospect: str,
        scenario: str,
        *,
        seed: int = 1,
        max_turns: int = 4,
        opener: str = "rep",
        model: str | ModelSettings = EMBEDDED_ID,
        judges: list[str | ModelSettings] | tuple[str | ModelSettings, ...] = (),
        rubric: Rubric | None = None,
        catalog: Catalog | None = None,
        **episode_fields: Any,
    ) -> EpisodeResult:
        import asyncio

        from sandbox.episode import play_episode
        from sandbox.runtime import model_runtime
        from sandbox.schemas import EpisodeSpec

        for side in ("rep_model", "prospect_model"):
            episode_fields[side] = _settings(episode_fields.get(side, model))
        spec = EpisodeSpec(
            strategy=strategy,
            prospect=prospect,
            scenario=scenario,
            seed=seed,
            max_turns=max_turns,
            opener=opener,  # type: ignore[arg-type]
            **episode_fields,
        )
        judge_settings = [_settings(j) for j in judges]
        models = [spec.rep_model, spec.prospect_model, *judge_settings]
        cassette = sandbox_cassette
        with cassette.around(cassette.next_path()) as path, model_runtime(models, path, cassette.record) as profiles:
            return asyncio.run(
                play_episode(
                    "pytest",
                    spec,
                    catalog or sandbox_catalog,
                    profiles,
                    (rubric or sandbox_rubric) if judge_settings else None,
                    judge_settings,
                )
            )

    return play


@dataclass(frozen=True)
class ExperimentResults:
    """What a test's experiment gave: the run's summary and each episode's latest result."""

    summary: RunSummary
    episodes: list[EpisodeResult]
    folder: Path

    def table(self) -> Any:
        """The tidy results table (one row per episode x judge model), as ``sandbox export`` writes it."""
        from sandbox.runfolder import RunFolder

        return RunFolder(self.folder).table()


RunExperiment = Callable[..., ExperimentResults]


@pytest.fixture
def sandbox_experiment(
    sandbox_cassette: SandboxCassette,
    sandbox_catalog: Catalog,
    sandbox_rubric: Rubric,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunExperiment:
    """``run(spec, *, rubric=None, catalog=None) -> ExperimentResults``: an experiment (an
    ``ExperimentSpec``, its fields as a dict, or a spec YAML's path) through the ordinary runner into a
    temporary run folder, its traffic replayed from the test's cassette. Keep it small: every episode's
    requests are in the cassette."""

    def run(spec: Any, *, rubric: Rubric | None = None, catalog: Catalog | None = None) -> ExperimentResults:
        from sandbox import runner
        from sandbox.experiment import ExperimentSpec, load_experiment
        from sandbox.runfolder import RunFolder

        catalog = catalog or sandbox_catalog
        if isinstance(spec, (str, Path)):
            spec = load_experiment(spec, catalog)
        elif not isinstance(spec, ExperimentSpec):
            spec = ExperimentSpec.model_validate(spec)
        folder = tmp_path_factory.mktemp("sandbox-run") / spec.id
        cassette = sandbox_cassette
        with cassette.around(cassette.next_path()) as path:
            outcome = runner.run(
                spec,
                catalog,
                (rubric or sandbox_rubric) if spec.models.judge else None,
                folder=folder,
                cassette=path,
                record=cassette.record,
                report=False,
                preflight=False,
            )
        return ExperimentResults(outcome.summary, list(RunFolder(outcome.folder).latest()), outcome.folder)

    return run
