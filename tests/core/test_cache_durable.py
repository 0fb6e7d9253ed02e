"""A paid answer is committed to the response cache before the gateway returns it, with the run
that paid for it: a process killed right after using an answer never pays for it again."""

import asyncio

from sqlalchemy import text

from trimloop.core.gateway import Gateway
from trimloop.core.ledger import Ledger
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.testing.fake_openai import running


def cached_rows(engine):
    with engine.connect() as conn:  # a connection of its own: sees only what was committed
        return conn.execute(text("SELECT key, run_id, cost FROM cachedresponse ORDER BY key")).all()


async def test_an_answer_is_committed_with_its_run_before_the_call_returns(engine):
    with running("--latency-ms", "20") as url:
        settings = Settings(gateway=GatewaySettings(max_retries=0),
                            models={"fake/m": ModelConfig(api_base=f"{url}/v1", input_per_mtok=1000,
                                                          output_per_mtok=2000)})
        gateway = Gateway(settings, engine=engine)
        ledger = Ledger(run_id=42)
        try:
            one = await gateway.call("fake/m", text="first", params={"max_tokens": 2}, ledger=ledger)
            assert cached_rows(engine) == [(one.key, 42, one.cost)]  # before aclose/flush
            many = await asyncio.gather(*[gateway.call("fake/m", text=f"item {i}", params={"max_tokens": 2},
                                                       ledger=ledger) for i in range(12)])
            rows = cached_rows(engine)
            assert {r.key for r in rows} == {one.key} | {m.key for m in many}
            assert {r.run_id for r in rows} == {42}
            assert sum(r.cost for r in rows) == ledger.spent and ledger.calls == 13
            free = await gateway.call("fake/m", text="item 3", params={"max_tokens": 2})  # no ledger, cached
            assert free.cached and len(cached_rows(engine)) == 13
        finally:
            await gateway.aclose()
