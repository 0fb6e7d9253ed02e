"""Provider faults during an optimization run, against the fake OpenAI server over real HTTP:
the run completes, or ends `failed` with a clear reason, and the run's ledger is the provider's
bill (answers delivered × price) while the dollar cap holds to the cent.

The server answers every review with its gold label, so without faults the run certifies a
cheaper candidate (see tests/optimizer/provider_workspace.py). Faults come from its scripted
cycle: 429 with Retry-After, 500, 503, timeouts (the server answers after the client gave up:
never delivered, never billed) and malformed bodies.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlmodel import select

from tests.optimizer.provider_workspace import (
    billed,
    models_config,
    paid_at_provider,
    prompt_config,
    server_args,
    write_store,
)
from trimloop.connectors.sync import sync
from trimloop.core.db import session_scope
from trimloop.core.evidence import RunResults
from trimloop.core.gateway import Gateway
from trimloop.core.settings import GatewaySettings, Settings
from trimloop.core.tables import Candidate, OptimizationRun, Prompt, Suggestion
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_openai import running

GATEWAY = GatewaySettings(concurrency=4, max_retries=6, backoff_base_s=0.01, backoff_max_s=0.2, timeout_s=0.5)
INTERMITTENT = ["ok", "429:1", "ok", "ok", "500", "ok", "ok", "503", "ok", "ok", "timeout", "ok", "ok",
                "malformed", "ok"]  # a third of all requests fail, each kind in turn


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with running(*server_args(tmp_path_factory.mktemp("provider"), "--latency-ms", "5", "--timeout-s", "1.5")) as url:
        yield url


@pytest.fixture
def provider_url(provider):
    """The server with no faults queued and zeroed counts (after abandoned requests finished)."""
    settle(provider)
    httpx.post(f"{provider}/_reset")
    return provider


def settle(url: str) -> None:
    """Wait until the server has finished every request it received (answered or abandoned)."""
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/_stats").json()["inflight"] and time.monotonic() < deadline:
        time.sleep(0.05)


def faults(url: str, *, first: list[str] = (), then: list[str] = ()) -> None:  # type: ignore[assignment]
    httpx.post(f"{url}/_faults", json={"faults": list(first), "cycle": list(then)})


def workspace(tmp_path, engine, url, *, price_scale: float = 1.0) -> tuple[Settings, int]:
    store = write_store(tmp_path / "store")
    settings = Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(store)}},
                        models=models_config(url, price_scale), prompts={"sentiment": prompt_config()},
                        gateway=GATEWAY)
    (report,) = sync(engine=engine, settings=settings)
    assert report.logs_added == 200
    with session_scope(engine) as session:
        return settings, session.exec(select(Prompt.id)).one()


def optimize(engine, settings, prompt_id, *, budget_dollars=None) -> tuple[OptimizationRun, Gateway]:
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, budget_dollars=budget_dollars).id

    async def go() -> OptimizationRun:
        async with Gateway(settings, engine=engine) as gateway:
            run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)
            go.gateway = gateway  # type: ignore[attr-defined]
            return run

    run = asyncio.run(go())
    return run, go.gateway  # type: ignore[attr-defined]


def assert_ledger_is_the_bill(run: OptimizationRun, url: str, settings: Settings) -> dict:
    settle(url)
    bodies = paid_at_provider(url)
    calls, dollars = billed(bodies, settings)
    assert run.calls_made == calls, "the run's call count is not what the provider answered"
    assert abs(run.spent_dollars - dollars) < 0.01 and run.spent_dollars == pytest.approx(dollars, abs=1e-9)
    assert all(b["answered"] <= 1 for b in bodies.values()), "a paid call was made twice"
    return bodies


def test_intermittent_faults_are_retried_and_the_run_completes(tmp_path, engine, provider_url):
    settings, prompt_id = workspace(tmp_path, engine, provider_url)
    faults(provider_url, then=INTERMITTENT)
    run, gateway = optimize(engine, settings, prompt_id)
    assert run.status == "succeeded", run.error
    stats = httpx.get(f"{provider_url}/_stats").json()
    assert stats["failed"] > 50 and stats["abandoned"] + stats["inflight"] > 5  # the faults really happened
    assert gateway.stats.retries >= stats["failed"] and gateway.stats.failures == 0
    assert_ledger_is_the_bill(run, provider_url, settings)
    with session_scope(engine) as session:
        (suggestion,) = session.exec(select(Suggestion)).all()
        assert suggestion.run_id == run.id and suggestion.evidence
        assert run.results.suggestion_id == suggestion.id


def test_a_provider_that_goes_down_for_good_fails_the_run_with_the_reason(tmp_path, engine, provider_url):
    settings, prompt_id = workspace(tmp_path, engine, provider_url)
    faults(provider_url, first=["ok"] * 60, then=["503"])  # answers 60 calls, then only 503s
    run, _ = optimize(engine, settings, prompt_id)
    assert run.status == "failed" and run.finished_at is not None
    assert "the model provider kept failing" in run.error and "gave up after 7 attempts" in run.error
    assert "503" in run.error and "Traceback" not in run.error and "hint:" in run.error
    assert run.results == RunResults()  # a failed run found nothing
    bodies = assert_ledger_is_the_bill(run, provider_url, settings)
    answered = sum(b["answered"] for b in bodies.values())
    abandoned = sum(b["abandoned"] for b in bodies.values())
    # the 60 scripted answers were each delivered (billed, counted) or, on a loaded machine, finished after
    # the client's 0.5 s timeout (abandoned: never delivered, never billed, retried into the 503s)
    assert run.calls_made == answered and answered + abandoned == 60 and answered >= 50
    with session_scope(engine) as session:  # nothing was concluded from calls that failed
        assert session.exec(select(Suggestion)).all() == [] and session.exec(select(Candidate)).all() == []


def test_a_provider_down_from_the_start_spends_nothing(tmp_path, engine, provider_url):
    settings, prompt_id = workspace(tmp_path, engine, provider_url)
    faults(provider_url, then=["500", "503", "429:1", "malformed"])
    run, _ = optimize(engine, settings, prompt_id)
    assert run.status == "failed" and "the model provider kept failing" in run.error
    assert "Traceback" not in run.error
    assert run.calls_made == 0 and run.spent_dollars == 0
    assert_ledger_is_the_bill(run, provider_url, settings)


def test_the_dollar_cap_holds_to_the_cent_when_it_is_reached_mid_run(tmp_path, engine, provider_url):
    settings, prompt_id = workspace(tmp_path, engine, provider_url, price_scale=20)  # about 1.4¢ a call
    faults(provider_url, then=["ok", "ok", "503", "ok", "429:1", "ok"])  # faults too: retries are not billed
    cap = 1.00  # about 70 calls; the run without a cap makes 280
    run, _ = optimize(engine, settings, prompt_id, budget_dollars=cap)
    assert run.status in ("succeeded", "failed"), run.error
    assert run.spent_dollars <= cap
    bodies = assert_ledger_is_the_bill(run, provider_url, settings)
    assert 0.9 * cap < run.spent_dollars and len(bodies) < 280  # it spent its budget and stopped early
    reason = run.error or run.results.no_suggestion or ""
    assert "dollar cap reached" in reason and f"cap ${cap:.6f}" in reason, reason
    with session_scope(engine) as session:
        assert session.exec(select(Suggestion)).all() == []
