"""Time to first token persisted (issue 21 item 3): a run on streamed calls against the fake OpenAI
server, which sends its first chunk after a configured delay, stores each call's TTFT in its
EvalResult row (control and candidate alike; they read back the same), and the suggestion's
latency claim reports both arms' TTFT beside the total latency."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.core.tables import EvalResult, Suggestion
from trimloop.evals.runner import stored_results
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_openai import running
from trimloop.testing.sentiment import REPLIES

from tests.optimizer.conftest import seed_sentiment

FIRST_TOKEN_S, REST_S = 0.06, 0.03
PARAMS = {"max_tokens": 3, "temperature": 0, "stream": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    rules = tmp_path_factory.mktemp("replies") / "replies.json"
    rules.write_text(json.dumps(REPLIES))
    with running("--count-tokens", "--replies", str(rules), "--first-token-ms", str(FIRST_TOKEN_S * 1000),
                 "--stream-rest-ms", str(REST_S * 1000)) as url:
        yield url


async def test_streamed_calls_store_their_time_to_first_token_and_the_claim_reports_it(engine, tmp_path, server):
    settings = Settings(home=tmp_path / "home", gateway=GatewaySettings(max_retries=0, timeout_s=20),
                        models={"fake/big": ModelConfig(api_base=f"{server}/v1", completion_only=True,
                                                        input_per_mtok=5, output_per_mtok=10),
                                "fake/small": ModelConfig(api_base=f"{server}/v1", completion_only=True,
                                                          input_per_mtok=1, output_per_mtok=2)})
    with session_scope(engine) as session:
        prompt_id = seed_sentiment(session, settings, model="fake/big", params=PARAMS, seed=3, latency_s=1.0)
        run_id = create_run(session=session, prompt_id=prompt_id, config={
            "models": ["fake/small"], "margin": 0.05, "dataset_size": 200, "rungs": [8, 24], "concurrency": 8,
            "max_latency_s": 5.0, "evaluators": {"matches_baseline": {"labels": ["positive", "negative"]}}}).id
    async with Gateway(settings, engine=engine) as gateway:
        run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is not None, (run.results.no_suggestion, run.results.certifications)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
        evidence = suggestion.evidence
        rows = {role: session.exec(select(EvalResult).where(EvalResult.eval_run_id == run_id_)).all()
                for role, run_id_ in (("control", evidence.control.eval_run_id),
                                      ("candidate", evidence.candidate_eval_run_id))}
        back = stored_results(session, evidence.candidate_eval_run_id).flat()
    claim = evidence.latency
    assert claim is not None and claim.objective == "cost (p50 ≤ 5 s)"
    for role, stored in rows.items():
        fresh = [r for r in stored if not r.cached]
        assert fresh, role
        # every fresh streamed call: its first token after the server's delay, before its last
        assert all(FIRST_TOKEN_S <= r.ttft_s < r.latency_s for r in fresh), role
    assert {r.item_id: r.ttft_s for r in back} == {r.item_id: r.ttft_s for r in rows["candidate"]}
    assert claim.ttft_n == claim.n and len(claim.ttft_p50_s) == len(claim.ttft_p95_s) == 2
    for p50, p95 in zip(claim.ttft_p50_s, claim.ttft_p95_s):
        assert FIRST_TOKEN_S <= p50 <= p95 < FIRST_TOKEN_S + REST_S + 0.5
    assert claim.before_s >= claim.ttft_p50_s[0] + REST_S * 0.9  # the total latency is the longer one
