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


def test_recording_again_replaces_the_runs_eval_runs(engine, settings, seeded):
    """A run that dies after recording and resumes records again: one set of EvalRuns, not two."""
    from trimloop.core.templates import Template
    from trimloop.evals.datasets import build_from_logs, dataset_items
    from trimloop.evals.evaluators import build_evaluators
    from trimloop.evals.runner import EvalItem, ItemResult
    from trimloop.optimizer.certify import Certification
    from trimloop.optimizer.context import RunContext
    from trimloop.optimizer.race import Arm
    from trimloop.optimizer.record import record_evaluations
    from trimloop.optimizer.spec import VersionSpec, start

    with session_scope(engine) as session:
        dataset = build_from_logs(session, prompt_id=seeded, size=40, holdout_fraction=0.5)
        rows = dataset_items(session, dataset.id)
        run_id = create_run(session=session, prompt_id=seeded).id
        dataset_id, baseline_id = dataset.id, dataset.version_id
    holdout = [EvalItem(r.id, r.inputs, r.expected, r.baseline_output) for r in rows if r.split == "holdout"]
    baseline = VersionSpec(Template(kind="text", text="{{text}}"), "local/gemma3-270m")
    candidate = start(baseline).then(VersionSpec(Template(kind="text", text="{{text}}!"), "local/smollm2-135m"),
                                     "retarget", "local/smollm2-135m")
    cert = Certification(arm=Arm(candidate, 1e-7), n_planned=len(holdout), n_wanted=len(holdout), alpha=0.025,
                         passed=True, reason="non-inferior")
    for item in holdout:
        cert.add(ItemResult(item.id, 0, " positive", {"matches_baseline": 1.0}, cost=1e-7, latency_s=0.1))
    run = RunContext(baseline=baseline, search_items=[], holdout_items=holdout, evaluators=build_evaluators(["matches_baseline"]),
                     baseline_results={i.id: ItemResult(i.id, 0, i.baseline_output, {"matches_baseline": 1.0}, cost=2e-7)
                                       for i in holdout}, gateway=None, margin=0.05)
    for _ in range(2):
        with session_scope(engine) as session:
            ids = record_evaluations(session, run_id=run_id, prompt_id=seeded, dataset_id=dataset_id,
                                     baseline_id=baseline_id, run=run, certs=[cert], candidate_ids={candidate.sha: 7})
    with session_scope(engine) as session:
        stored = session.exec(select(EvalRun).where(EvalRun.run_id == run_id)).all()
        counts = {r.id: len(session.exec(select(EvalResult).where(EvalResult.eval_run_id == r.id)).all()) for r in stored}
        summary = session.get(EvalRun, ids[candidate.sha]).summary
    assert sorted(counts) == sorted(ids.values()) and set(counts.values()) == {len(holdout)}
    assert summary["role"] == "candidate" and summary["candidate_id"] == 7 and summary["scores"]["matches_baseline"] == 1.0
    assert summary["certification"] == {"alpha": 0.025, "margin": 0.05, "margins": {"matches_baseline": 0.05},
                                        "passed": True, "reason": "non-inferior", "n_planned": len(holdout),
                                        "n_wanted": len(holdout)}
