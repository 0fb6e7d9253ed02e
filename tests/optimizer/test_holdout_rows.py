"""A suggestion's evidence re-derives, item by item, from the EvalRuns certification stored: one
per arm (the baseline, and every candidate it tested, passed or not)."""

from __future__ import annotations

import zlib
from collections import defaultdict

from sqlmodel import col, select

from trimloop.core.db import session_scope
from trimloop.core.tables import EvalResult, EvalRun, RunEvent, Suggestion
from trimloop.evals.report import compare_runs
from trimloop.evals.stats import non_inferiority
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider
from trimloop.testing.sentiment import classify, prompt_text


def sloppy_small_model(model: str, prompt: str) -> str:
    """Right on clear reviews, except that SmolLM answers 'neutral' to one prompt in 13: with this
    store the first candidate certification tests stops for futility and the second passes."""
    if "smollm" in model and zlib.crc32(prompt.encode()) % 13 == 0:
        return "neutral"
    return classify(prompt_text(prompt))


def by_item(rows: list[EvalResult], key: str) -> dict[int, list[float]]:
    """Scores per item, items in id order and samples in sample order, straight from the rows."""
    out: dict[int, list[float]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.item_id, r.sample)):
        out[row.item_id].append(row.scores[key])
    return dict(out)


async def test_the_evidence_rederives_exactly_from_the_stored_rows(engine, settings, seeded, gateway_for):
    provider = FakeProvider(responder=sloppy_small_model)
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=seeded, config={"certify_top": 3}).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway_for(provider))
    assert run.status == "succeeded", run.error
    certs = run.results.certifications
    assert [c.passed for c in certs] == [False, True], certs  # one arm failed, the next passed
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).one()
        evidence = suggestion.evidence
        eval_runs = {r.id: r for r in session.exec(select(EvalRun).where(EvalRun.run_id == run_id))}
        rows: dict[int, list[EvalResult]] = defaultdict(list)
        for row in session.exec(select(EvalResult).where(col(EvalResult.eval_run_id).in_(list(eval_runs)))):
            rows[row.eval_run_id].append(row)
        finished = [e.data for e in session.exec(select(RunEvent).where(
            RunEvent.run_id == run_id, RunEvent.kind == "certify.finished").order_by(col(RunEvent.id)))]
        rederived = compare_runs(session, evidence.baseline_eval_run_id, evidence.candidate_eval_run_id)

    # One EvalRun per arm, on the holdout; the candidate's is the suggestion's version.
    base_run, cand_run = eval_runs[evidence.baseline_eval_run_id], eval_runs[evidence.candidate_eval_run_id]
    assert len(eval_runs) == 1 + len(certs) and {c.eval_run_id for c in certs} | {base_run.id} == set(eval_runs)
    assert {r.split for r in eval_runs.values()} == {"holdout"}
    assert base_run.version_id == suggestion.baseline_version_id
    assert cand_run.version_id == suggestion.candidate_version_id and cand_run.summary["role"] == "candidate"
    # Every call certification made is a row: output, scores, tokens, cost, latency.
    assert sum(len(rows[c.eval_run_id]) for c in certs) == run.results.certify_requests
    for row in rows[cand_run.id]:
        assert row.output and row.input_tokens > 0 and row.cost > 0 and row.error is None
        assert set(row.scores) == set(evidence.evaluators)

    # Re-derived by hand from the rows: the same verdict, n, mean difference and lower bound, exactly.
    alpha = cand_run.summary["certification"]["alpha"]
    assert alpha in [0.05 / k for k in (1, 2, 3)]
    for key, stored in evidence.evaluators.items():
        cand = by_item(rows[cand_run.id], key)
        base = {i: s for i, s in by_item(rows[base_run.id], key).items() if i in cand}
        test = non_inferiority(base, cand, margin=settings.prompts["sentiment"]["margin"], alpha=alpha)
        assert (test.verdict, test.n, test.delta, test.lower) == (stored.verdict, stored.n, stored.delta, stored.lower)
        assert test.n == evidence.n and stored.verdict == "non-inferior"
        assert rederived.verdicts[key].to_dict() == stored.model_dump(exclude_none=True)
    # The arm that failed re-derives too: the evidence its certify.finished event showed.
    failed = certs[0]
    with session_scope(engine) as session:
        again = compare_runs(session, base_run.id, failed.eval_run_id)
    shown = next(e for e in finished if e["sha"] == failed.sha)
    assert not shown["passed"] and {k: v.to_dict() for k, v in again.verdicts.items()} == shown["evidence"]
