"""Gateway throughput against a fixed-latency OpenAI-compatible server.

2,000 calls at concurrency 64, at 50 ms and 500 ms latency, through trimloop's gateway and,
in the same run, a plain `litellm.acompletion` loop and a bare aiohttp loop (the practical
limit). Ratio = ideal time (N × latency / concurrency) ÷ wall time. Prints JSON.

    python -m bench.gateway [--calls 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from bench._util import fake_openai, machine
from trimloop.core.db import make_engine, upgrade
from trimloop.core.gateway import Gateway
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings

MODEL = "bench/fake"


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Classify the sentiment of review number {i}: it was fine."}] for i in range(n)]


async def run_gateway(gateway: Gateway, messages: list[list[dict[str, str]]]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, dollars spent)."""
    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(
        *[gateway.call(MODEL, messages=m, params={"max_tokens": 8, "temperature": 0}) for m in messages]
    )
    return time.perf_counter() - wall, time.process_time() - cpu, sum(r.spent for r in results)


async def run_litellm(base: str, messages: list[list[dict[str, str]]], concurrency: int) -> float:
    from trimloop.core.catalog import import_litellm

    litellm = import_litellm()
    limit = asyncio.Semaphore(concurrency)

    async def one(m: list[dict[str, str]]) -> None:
        async with limit:
            await litellm.acompletion(model="openai/fake", messages=m, api_base=base, api_key="none",
                                      max_tokens=8, temperature=0)

    wall = time.perf_counter()
    await asyncio.gather(*[one(m) for m in messages])
    return time.perf_counter() - wall


async def run_aiohttp(base: str, messages: list[list[dict[str, str]]], concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(m: list[dict[str, str]]) -> None:
            async with limit:
                async with session.post(f"{base}/chat/completions",
                                        json={"model": "fake", "messages": m, "max_tokens": 8}) as resp:
                    await resp.json()

        wall = time.perf_counter()
        await asyncio.gather(*[one(m) for m in messages])
        return time.perf_counter() - wall


def bench_latency(latency_ms: float, calls: int, concurrency: int, peers: bool) -> dict[str, object]:
    ideal = calls * latency_ms / 1000 / concurrency
    messages = prompts(calls)
    out: dict[str, object] = {"latency_ms": latency_ms, "ideal_s": round(ideal, 3)}
    with fake_openai(latency_ms) as base, tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        settings = Settings(
            home=Path(tmp),
            gateway=GatewaySettings(concurrency=concurrency),
            models={MODEL: ModelConfig(api_base=base, input_per_mtok=0.15, output_per_mtok=0.6)},
        )

        async def gateway_runs() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
            async with Gateway(settings, engine=engine) as gw:
                await gw.call(MODEL, messages=[{"role": "user", "content": "warm-up"}])
                first = await run_gateway(gw, messages)
                again = await run_gateway(gw, messages)
                return first, again

        (wall, cpu, spend), (cached_wall, _, cached_spend) = asyncio.run(gateway_runs())
        engine.dispose()
        out.update(
            gateway_s=round(wall, 3),
            gateway_ratio=round(ideal / wall, 3),
            gateway_cpu_ms_per_call=round(cpu / calls * 1000, 3),
            gateway_spend=spend,
            cached_rerun_s=round(cached_wall, 3),
            cached_rerun_spend=cached_spend,
        )
        if peers:
            aio = asyncio.run(run_aiohttp(base, messages, concurrency))
            out.update(aiohttp_s=round(aio, 3), aiohttp_ratio=round(ideal / aio, 3))
            lite = asyncio.run(run_litellm(base, messages, concurrency))
            out.update(litellm_s=round(lite, 3), litellm_ratio=round(ideal / lite, 3))
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description="gateway throughput bench")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    fast = bench_latency(50, args.calls, args.concurrency, peers=True)
    slow = bench_latency(500, args.calls, args.concurrency, peers=False)
    result = {
        "bench": "gateway",
        "calls": args.calls,
        "concurrency": args.concurrency,
        "ratio_50ms": fast["gateway_ratio"],
        "ratio_500ms": slow["gateway_ratio"],
        "litellm_ratio_50ms": fast["litellm_ratio"],
        "aiohttp_ratio_50ms": fast["aiohttp_ratio"],
        "cpu_ms_per_call": fast["gateway_cpu_ms_per_call"],
        "cached_rerun_s": fast["cached_rerun_s"],
        "cached_rerun_spend": fast["cached_rerun_spend"],
        "runs": {"50ms": fast, "500ms": slow},
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
