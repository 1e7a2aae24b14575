"""The embedded model's dialogues: how often they fail, how long they run, how often a message echoes.

Plays ``sandbox negotiate``'s own pipeline (the README's arguments, default 12 turns, no judge) on the
embedded SmolLM2-135M for N seeds and each strategy given, a few dialogues at once on one server, and
prints per strategy and overall:

- failed share: episodes that ended ``failed`` (and their reasons, counted);
- mean turns;
- echo share: of all message attempts, those the two-call policy threw away because they only repeated
  the other side's last line, and of the messages kept, those that are still near-copies of it
  (difflib ratio >= 0.8);
- own repeats: kept messages that repeat one of the speaker's own earlier lines word for word;
- message attempts per kept message, and wall time per dialogue.

A benchmark, not a test: it prints, never asserts.

    python bench/embedded_dialogue.py [--seeds 20] [--strategies assertive-consultant,eager-to-please]
        [--prospect price-haggler] [--scenario saas-seats] [--max-turns 12] [--concurrency 4] [--threads 2]
        [--timeout 600] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from sandbox.catalog import load_catalog
from sandbox.engine import run_episode
from sandbox.local_server import LocalServer
from sandbox.profiles import Profiles
from sandbox.schemas import EpisodeSpec, ModelSettings, Transcript

ECHO_REJECTED = "echoes the other side"
NEAR_COPY = 0.8


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class Tally:
    episodes: int = 0
    failed: int = 0
    turns: int = 0
    wall_s: float = 0.0
    attempts: int = 0  # message calls made
    echo_rejected: int = 0  # message calls thrown away as echoes
    kept: int = 0
    near_copies: int = 0
    own_repeats: int = 0
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)

    def add(self, transcript: Transcript, wall_s: float) -> None:
        self.episodes += 1
        self.wall_s += wall_s
        self.turns += len(transcript.turns)
        status = transcript.outcome.status.value
        self.outcomes[status] += 1
        if status == "failed":
            self.failed += 1
            reason = transcript.outcome.reason or ""
            self.reasons[reason.split(": ", 1)[-1]] += 1
        calls = [c for t in transcript.turns for c in t.calls] + list(transcript.failed_turn_calls)
        messages = [c for c in calls if c.purpose.endswith(":message")]
        self.attempts += len(messages)
        self.echo_rejected += sum(1 for c in messages if c.error and ECHO_REJECTED in c.error)
        said: dict[str, list[str]] = {"rep": [], "prospect": []}
        previous: str | None = None
        for turn in transcript.turns:
            text = _norm(turn.message)
            self.kept += 1
            if previous is not None and difflib.SequenceMatcher(None, text, previous).ratio() >= NEAR_COPY:
                self.near_copies += 1
            if text in said[turn.speaker]:
                self.own_repeats += 1
            said[turn.speaker].append(text)
            previous = text

    def line(self, label: str) -> str:
        n = max(self.episodes, 1)
        attempts = max(self.attempts, 1)
        kept = max(self.kept, 1)
        return (
            f"{label:<24} episodes {self.episodes:>3}  failed {self.failed:>2} ({self.failed / n:.0%})  "
            f"mean turns {self.turns / n:5.2f}  echo rejected {self.echo_rejected}/{self.attempts} "
            f"({self.echo_rejected / attempts:.1%})  near-copies kept {self.near_copies}/{self.kept} "
            f"({self.near_copies / kept:.1%})  own repeats {self.own_repeats}/{self.kept}  "
            f"attempts/message {self.attempts / kept:.2f}  wall {self.wall_s / n:5.1f} s/dialogue"
        )


async def play(args: argparse.Namespace, api_base: str) -> dict[str, Tally]:
    catalog = load_catalog()
    settings = ModelSettings(model="local", timeout_s=args.timeout)
    profiles = Profiles([settings], embedded_api_base=api_base, embedded_slots=args.concurrency)
    profile = profiles[settings]
    gate = asyncio.Semaphore(args.concurrency)
    tallies: dict[str, Tally] = {}

    async def one(strategy: str, seed: int) -> None:
        spec = EpisodeSpec(
            strategy=strategy,
            prospect=args.prospect,
            scenario=args.scenario,
            seed=seed,
            max_turns=args.max_turns,
            rep_model=settings,
            prospect_model=settings,
        )
        async with gate:
            started = time.perf_counter()
            transcript = await run_episode(spec, catalog, profile, profile)
            wall = time.perf_counter() - started
        tallies.setdefault(strategy, Tally()).add(transcript, wall)
        if args.verbose:
            o = transcript.outcome
            print(f"  {strategy} seed {seed}: {o.status.value} after {len(transcript.turns)} turns {o.reason or ''}")

    strategies = args.strategies.split(",")
    await asyncio.gather(*(one(s, seed) for s in strategies for seed in range(1, args.seeds + 1)))
    return {s: tallies[s] for s in strategies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--strategies", default="assertive-consultant,eager-to-please")
    parser.add_argument("--prospect", default="price-haggler")
    parser.add_argument("--scenario", default="saas-seats")
    parser.add_argument("--max-turns", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the server's)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per call, s (a loaded machine is slow)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    server = LocalServer(parallel=args.concurrency, threads=args.threads).start()
    started = time.perf_counter()
    try:
        tallies = asyncio.run(play(args, server.api_base))
    finally:
        server.stop()
    wall = time.perf_counter() - started
    total = Tally()
    print(
        f"embedded dialogues: {args.prospect} on {args.scenario}, seeds 1-{args.seeds}, max {args.max_turns} turns, "
        f"{args.concurrency} at once, llama.cpp threads {server.threads}, load {os.getloadavg()[0]:.2f}"
    )
    for strategy, tally in tallies.items():
        print(tally.line(strategy))
        for name in ("episodes", "failed", "turns", "wall_s", "attempts", "echo_rejected", "kept"):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
        total.near_copies += tally.near_copies
        total.own_repeats += tally.own_repeats
        total.outcomes.update(tally.outcomes)
        total.reasons.update(tally.reasons)
    print(total.line("all"))
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in total.outcomes.most_common()))
    for reason, count in total.reasons.most_common():
        print(f"  failed x{count}: {reason}")
    print(f"wall {wall:.1f} s for {total.episodes} dialogues")


if __name__ == "__main__":
    main()
