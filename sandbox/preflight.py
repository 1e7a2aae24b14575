"""Before a run or a negotiation starts: does every model endpoint it needs answer as its profile claims?

Each distinct endpoint (a spec's temperature or turn mode makes several settings of one endpoint) is
checked once, all of them at once, with the very request of ``sandbox models check``
(:func:`sandbox.checks.check_model`, purpose ``preflight``): the credentials resolve, an ``api_base``
is reachable and serves the model, the structured output the profile asks for comes back valid. A
run whose endpoint fails stops before its first episode, with one line per failing endpoint, instead
of failing every episode of the night the same way.

Two kinds of endpoint are not checked:

- **The embedded model.** The sandbox starts its server itself, waits for its health check and stops
  in one line when it cannot start (:class:`sandbox.local_server.LocalModelError`); its structured
  output is a grammar by construction.
- **Anything, under a replayed cassette.** The cassette answers every request and no server need
  exist, so there is nothing to reach; and the check's request is not in the cassette. When
  recording, the check runs before the cassette is entered (like the embedded server's health
  checks), so cassettes never hold it and replays of old ones stay as they were.

The check goes around a run's response cache (an answer from the cache would prove nothing) and is
not counted in the run's calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from sandbox.checks import CheckResult
from sandbox.profiles import Profile, Profiles, each_server, is_embedded
from sandbox.schemas import ModelSettings

PURPOSE = "preflight"


class PreflightError(RuntimeError):
    """Endpoints that failed the preflight; ``problems`` holds one line per endpoint."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def replaying(cassette: Path | None, record: bool) -> bool:
    return cassette is not None and not record


def endpoints_to_check(settings: Iterable[ModelSettings]) -> list[Profile]:
    """One profile per distinct endpoint, the embedded model left out, in first-seen order: a model on
    several deployments once per deployment, and every fallback a call may reach."""
    profiles = Profiles(s for s in settings if not is_embedded(s))
    distinct: dict[object, Profile] = {}
    for profile in profiles.all():
        for server in each_server(profile):
            distinct.setdefault(server.endpoint, server)
    return list(distinct.values())


async def check_endpoints(profiles: list[Profile]) -> list[CheckResult]:
    """Every endpoint checked at once, each within its own profile's timeout."""
    from sandbox.checks import check_model

    return list(await asyncio.gather(*(check_model(p, timeout_s=p.timeout_s, purpose=PURPOSE) for p in profiles)))


def preflight(settings: Iterable[ModelSettings]) -> list[str]:
    """The problems found, one line per failing endpoint; empty when every endpoint is ready."""
    profiles = endpoints_to_check(settings)
    if not profiles:
        return []
    results = asyncio.run(check_endpoints(profiles))
    return [problem for problem in (r.problem() for r in results) if problem is not None]


def require_ready(settings: Iterable[ModelSettings], cassette: Path | None = None, record: bool = False) -> None:
    """Raise :class:`PreflightError` when an endpoint fails; a replay checks nothing (see the module)."""
    if replaying(cassette, record):
        return
    problems = preflight(settings)
    if problems:
        raise PreflightError(problems)
