"""Embedded model throughput through sandbox's own model layer (litellm -> llama.cpp).

Prints server load time, then tokens/s on 1 stream and on N parallel slots, next to the
server's own reported generation speed. A benchmark, not a test: it prints, never asserts.

    python bench/embedded_throughput.py [--parallel 4] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from sandbox.local_server import serve_local_model
from sandbox.models import complete
from sandbox.profiles import resolve
from sandbox.schemas import ModelSettings

PROMPT = [{"role": "user", "content": "Write a short story about a salesperson who learns to listen."}]


async def run_streams(api_base: str, streams: int, tokens: int) -> tuple[float, int]:
    endpoint = resolve(ModelSettings(), api_base).endpoint
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            complete(endpoint, PROMPT, purpose="bench", max_tokens=tokens, seed=i, temperature=0.8)
            for i in range(streams)
        )
    )
    wall = time.perf_counter() - started
    return wall, sum(r.call.tokens_out for r in results)


async def server_reported_speed(base_url: str, streams: int, tokens: int) -> float:
    """llama.cpp's own generation speed for ``streams`` requests at once, summed over them (each
    response carries ``timings.predicted_per_second`` for its slot), asked directly, not through sandbox."""
    async with httpx.AsyncClient(timeout=120) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{base_url}/v1/chat/completions",
                    json={"model": "x", "messages": PROMPT, "max_tokens": tokens, "seed": 99 + i, "temperature": 0.8},
                )
                for i in range(streams)
            )
        )
    return sum(float(r.json().get("timings", {}).get("predicted_per_second", 0.0)) for r in responses)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    with serve_local_model(parallel=args.parallel) as server:
        print(f"server load: {server.load_seconds:.2f} s ({server.parallel} slots, {server.threads} threads)")
        asyncio.run(run_streams(server.api_base, 1, 8))  # warm-up
        for streams in (1, args.parallel):
            reported = asyncio.run(server_reported_speed(server.base_url, streams, args.tokens))
            wall, tokens = asyncio.run(run_streams(server.api_base, streams, args.tokens))
            rate = tokens / wall
            print(
                f"{streams} stream(s): {tokens} tokens in {wall:.2f} s = {rate:.1f} tokens/s through sandbox; "
                f"server-reported {reported:.1f} tokens/s; ratio {rate / reported:.2f}"
            )


if __name__ == "__main__":
    main()
