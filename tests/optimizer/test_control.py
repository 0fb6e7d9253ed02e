"""The baseline control arm (issue 21): a provider that is not deterministic at temperature 0
charges a candidate with its own noise when the baseline's side is its logged outputs; re-running
the baseline beside the candidate cancels it."""

from __future__ import annotations

import pytest

from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.runner import EvalItem, ItemResult
from trimloop.optimizer.certify import certify, evaluate_beside
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.race import Arm
from trimloop.optimizer.spec import VersionSpec, start
from trimloop.testing.fake_provider import FakeProvider, noisy, uniform

BASELINE = VersionSpec(Template.plain("Classify: {{t}}"), "local/gemma3-270m", {"max_tokens": 4})
CHANGED = VersionSpec(Template.plain("Label: {{t}}"), "local/gemma3-270m", {"max_tokens": 4})


def truth(prompt: str) -> str:
    """The model's answer when it is not noisy; the changed prompt answers 10 % of items otherwise."""
    text = prompt.split(": ", 1)[1]
    label = "positive" if uniform(text, seed=1) < 0.5 else "negative"
    if prompt.startswith("Label:") and uniform(text, seed=2) < 0.10:
        label = "negative" if label == "positive" else "positive"
    return label


def setup(n_search: int = 144, n_holdout: int = 2000):
    items = [EvalItem(id=i, inputs={"t": f"review {i}"}, baseline_output=truth(f"Classify: review {i}"))
             for i in range(n_search + n_holdout)]
    logged = {i.id: ItemResult(item_id=i.id, sample=0, output=i.baseline_output, scores={"matches_baseline": 1.0})
              for i in items}
    provider = FakeProvider(responder=noisy(lambda model, prompt: truth(prompt), rate=0.05, seed=3))
    return items[:n_search], items[n_search:], logged, provider


async def certified(candidate: VersionSpec, *, control: bool):
    search_items, holdout, logged, provider = setup()
    run = RunContext(baseline=BASELINE, search_items=search_items, holdout_items=holdout, baseline_results=logged,
                     evaluators=build_evaluators(["matches_baseline"]), gateway=Gateway(Settings(), provider=provider),
                     margin=0.03, alpha=0.05, control=control)
    arm = Arm(start(candidate), est_cost=0.0)
    await evaluate_beside(run, arm, search_items, on_result=arm.add, on_control=run.keep_control)  # the race's look
    [cert] = await certify(ranked=[arm], run=run, top=1)
    return cert, provider


async def test_with_the_control_arm_the_unchanged_prompt_is_certified():
    cert, provider = await certified(BASELINE, control=True)
    e = cert.evidence["matches_baseline"]
    assert cert.passed, cert.reason
    # both arms disagree with the logs about 5 % of the time; the paired difference is near 0
    assert 0.93 < e.baseline_mean < 0.97 and 0.93 < e.candidate_mean < 0.97 and e.lower > -0.03
    assert cert.control_calls == cert.calls  # one control call beside each candidate call
    assert len(provider.calls) == 2 * (144 + cert.calls)


async def test_with_the_control_arm_a_prompt_that_changes_10_percent_of_answers_is_refused():
    cert, _ = await certified(CHANGED, control=True)
    e = cert.evidence["matches_baseline"]
    assert not cert.passed
    assert -0.16 < e.delta < -0.06 and e.upper < -0.03  # shown inferior (it stopped early, for futility)


async def test_without_the_control_arm_the_unchanged_prompt_fails():
    cert, provider = await certified(BASELINE, control=False)
    e = cert.evidence["matches_baseline"]
    assert not cert.passed and cert.control is None
    assert e.baseline_mean == 1.0 and -0.07 < e.delta < -0.03  # charged with the provider's own noise
    assert len(provider.calls) == 144 + cert.calls


async def test_control_calls_are_interleaved_with_the_candidates_and_cached_per_scope(engine):
    """Control and candidate calls alternate item by item; a second arm on the same items reuses the
    run's control answers from the cache, and another run (scope) pays for its own."""
    search_items, _, logged, provider = setup(n_search=20, n_holdout=0)
    gateway = Gateway(Settings(), engine=engine, provider=provider)
    try:
        def run_with(scope: str) -> RunContext:
            return RunContext(baseline=BASELINE, search_items=search_items, holdout_items=[], baseline_results=logged,
                              evaluators=build_evaluators(["matches_baseline"]), gateway=gateway, control=True,
                              control_scope=scope, concurrency=1)
        run = run_with("control of run 1")
        first, second = Arm(start(CHANGED), est_cost=0.0), Arm(start(BASELINE.replace(params={"max_tokens": 5})), 0.0)
        await evaluate_beside(run, first, search_items, on_result=first.add, on_control=run.keep_control)
        prompts = [c["prompt"].split(":")[0] for c in provider.calls]
        assert prompts == ["Classify", "Label"] * 20
        await evaluate_beside(run, second, search_items, on_result=second.add, on_control=run.keep_control)
        assert len(provider.calls) == 60 and run.controls.calls == 20  # the control was answered from the cache
        other = run_with("control of run 2")
        await evaluate_beside(other, first, search_items[:5], on_result=lambda r: None, on_control=other.keep_control)
        assert len(provider.calls) == 65  # the candidate from the cache, the other run's control afresh
    finally:
        await gateway.aclose()


async def test_a_run_with_the_control_arm_stores_it_and_its_evidence_re_derives(engine, settings, seeded,
                                                                                 gateway_for):
    """`control = "always"`: the run's control calls are counted, its holdout results stored as the
    side the evidence compares with, and the stored rows re-derive the evidence exactly."""
    from sqlmodel import select

    from trimloop.core.db import session_scope
    from trimloop.core.tables import RunEvent, Suggestion
    from trimloop.evals.report import compare_runs
    from trimloop.optimizer.run import create_run, execute_run
    from trimloop.testing.sentiment import classify, prompt_text

    provider = FakeProvider(responder=lambda model, prompt: classify(prompt_text(prompt)))
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=seeded, config={"control": "always"}).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway_for(provider))
    assert run.status == "succeeded", run.error
    control = run.results.control
    assert control.on and control.calls > 0 and run.results.objective == "cost"
    assert run.calls_made == len(provider.calls)  # the control's calls are paid and counted like any other
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
        events = {e.kind: e.data for e in session.exec(select(RunEvent).where(RunEvent.run_id == run.id))}
        evidence = suggestion.evidence
        again = compare_runs(session, evidence.baseline_eval_run_id, evidence.candidate_eval_run_id)
    assert events["run.control"]["on"] and "always" in events["run.control"]["reason"]
    assert evidence.control.on and evidence.control.eval_run_id == evidence.baseline_eval_run_id
    assert evidence.control.items == evidence.n and evidence.control.agreement
    for key, verdict in evidence.evaluators.items():
        assert again.verdicts[key].lower == pytest.approx(verdict.lower) and again.verdicts[key].passed


async def test_auto_turns_the_control_on_for_agreement_on_a_provider_not_known_deterministic():
    from trimloop.optimizer.objective import Objective, control_wanted

    agreement = build_evaluators(["matches_baseline"])
    gold = build_evaluators(["exact"])
    on = lambda model, evaluators, mode="auto", objective=Objective(), params=None: control_wanted(  # noqa: E731
        mode, objective, baseline_model=model, params=params or {}, evaluators=evaluators)[0]
    assert on("gpt-4o-mini", agreement) and not on("local/gemma3-270m", agreement)
    assert on("local/gemma3-270m", agreement, params={"temperature": 0.7})
    assert not on("gpt-4o-mini", gold) and on("gpt-4o-mini", gold, mode="always")
    assert not on("gpt-4o-mini", agreement, mode="never")
    assert on("local/gemma3-270m", gold, objective=Objective(kind="latency"))  # latency needs fresh calls
