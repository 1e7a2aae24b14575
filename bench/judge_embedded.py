"""The embedded judge: wall time, and how much of each prompt llama.cpp read afresh or reused.

Judges the first N calibration cases on all criteria with the exact requests `judge_criterion`
sends (same messages, same constrained schema), straight to the llama.cpp server so each answer's
`timings` (prompt tokens evaluated, prompt tokens reused from the slot's cache, tokens generated)
can be summed. One line per setting: criteria in flight per transcript x transcripts in flight.
A benchmark, not a test: it prints, never asserts.

    python bench/judge_embedded.py [--cases 4] [--settings 1x1,4x1,1x4,4x4]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from sandbox.calibration import load_calibration, to_judge_case
from sandbox.catalog import load_catalog
from sandbox.judge import JudgeCase, constrained_verdict_model, judge_messages, load_rubric
from sandbox.local_server import LOCAL_MODEL_NAME, serve_local_model
from sandbox.models import json_schema_format
from sandbox.schemas import Criterion, Rubric


async def one_call(client: httpx.AsyncClient, base: str, case: JudgeCase, criterion: Criterion) -> dict[str, int]:
    body = {
        "model": LOCAL_MODEL_NAME,
        "messages": judge_messages(case, criterion),
        "temperature": 0.0,
        "max_tokens": 200,
        "seed": 1,
        "response_format": json_schema_format(constrained_verdict_model(case), strict=True),
    }
    response = await client.post(f"{base}/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json().get("timings", {})


async def judge_all(base: str, cases: list[JudgeCase], rubric: Rubric, criteria: int, transcripts: int) -> str:
    by_transcript = asyncio.Semaphore(transcripts)
    async with httpx.AsyncClient(timeout=600) as client:

        async def one_case(case: JudgeCase) -> list[dict[str, int]]:
            async with by_transcript:
                gate = asyncio.Semaphore(criteria)

                async def one(criterion: Criterion) -> dict[str, int]:
                    async with gate:
                        return await one_call(client, base, case, criterion)

                return await asyncio.gather(*(one(c) for c in rubric.criteria))

        started = time.perf_counter()
        timings = [t for per_case in await asyncio.gather(*(one_case(c) for c in cases)) for t in per_case]
        wall = time.perf_counter() - started
    evaluated = sum(t.get("prompt_n", 0) for t in timings)
    reused = sum(t.get("cache_n", 0) for t in timings)
    generated = sum(t.get("predicted_n", 0) for t in timings)
    return (
        f"criteria in flight {criteria}, transcripts in flight {transcripts}: {len(timings)} calls in {wall:.1f} s "
        f"({wall / len(timings):.2f} s a call); prompt tokens evaluated {evaluated}, reused from cache {reused} "
        f"({reused / max(evaluated + reused, 1):.0%}); tokens generated {generated}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--settings", default="1x1,4x1,1x4,4x4", help="criteria x transcripts in flight")
    parser.add_argument("--parallel", type=int, default=4, help="llama.cpp slots")
    args = parser.parse_args()
    catalog = load_catalog()
    rubric = load_rubric()
    cases = [to_judge_case(c, catalog) for c in load_calibration("judges/calibration", rubric, catalog)[: args.cases]]
    for setting in args.settings.split(","):
        criteria, transcripts = (int(x) for x in setting.split("x"))
        with serve_local_model(parallel=args.parallel) as server:  # a fresh server: no cache left from before
            print(asyncio.run(judge_all(server.base_url, cases, rubric, criteria, transcripts)), flush=True)


if __name__ == "__main__":
    main()
