"""Certification on the holdout: the gate, the power helper, and stopping early only to fail."""

from __future__ import annotations

from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.runner import EvalItem, ItemResult
from trimloop.optimizer.certify import certify
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.race import Arm
from trimloop.optimizer.spec import VersionSpec, start
from trimloop.testing.fake_provider import FakeProvider


def _run(items, baseline, gateway, **extra) -> RunContext:
    """Certification on `items` as the holdout; the arms' search items are among them (baseline known)."""
    return RunContext(baseline=VersionSpec(Template.plain("Say: {{t}}"), "local/gemma3-270m"), search_items=[],
                      holdout_items=items, baseline_results=baseline, evaluators=build_evaluators(["exact"]),
                      gateway=gateway, margin=0.03, alpha=0.05, **extra)


def _setup(n: int):
    items = [EvalItem(id=i, inputs={"t": f"item {i}"}, expected="positive") for i in range(n)]
    baseline = {i.id: ItemResult(item_id=i.id, sample=0, output="positive", scores={"exact": 1.0}) for i in items}
    arm = Arm(start(VersionSpec(Template.plain("Say: {{t}}"), "local/smollm2-135m", {"max_tokens": 2})), est_cost=0.0)
    for i in items[:30]:  # what the search saw: agreement on 30 items
        arm.add(ItemResult(item_id=i.id, sample=0, output="positive", scores={"exact": 1.0}))
    return items, baseline, arm


async def test_a_clearly_worse_candidate_is_stopped_early_and_fails():
    items, baseline, arm = _setup(800)
    gateway = Gateway(Settings(), provider=FakeProvider(responder=lambda model, prompt: "negative"))
    [cert] = await certify(ranked=[arm], run=_run(items, baseline, gateway), top=1)
    assert not cert.passed and "futility" in cert.reason and cert.calls < cert.n_planned


async def test_an_equal_candidate_passes_on_the_planned_items():
    items, baseline, arm = _setup(800)
    gateway = Gateway(Settings(), provider=FakeProvider(responder=lambda model, prompt: "positive"))
    [cert] = await certify(ranked=[arm], run=_run(items, baseline, gateway), top=1)
    assert cert.passed and cert.calls == cert.n_planned <= 800
    assert cert.evidence["exact"].lower > -0.03


def test_the_power_helper_plans_for_the_loss_the_search_saw():
    from trimloop.optimizer.certify import anticipated_delta, planned_items

    items, baseline, equal = _setup(800)
    behind = Arm(equal.candidate, est_cost=0.0)
    for n, i in enumerate(items[:200]):  # 1.5 points behind on the search: 3 more misses than the baseline
        behind.add(ItemResult(item_id=i.id, sample=0, output="x", scores={"exact": 0.0 if n % 67 == 0 else 1.0}))
    plan = dict(keys=["exact"], margin=0.03, alpha=0.05, power=0.8)
    at_parity, at_loss = planned_items(equal, baseline, **plan), planned_items(behind, baseline, **plan)
    assert at_loss > 2 * at_parity
    assert anticipated_delta(-0.015, 0.03) == -0.015
    assert anticipated_delta(+0.02, 0.03) == 0.0  # a gain is planned as parity
    assert anticipated_delta(-0.2, 0.03) == -0.015  # never below half the margin


def test_certification_tests_first_what_is_likely_to_pass_on_the_items_there_are():
    from trimloop.optimizer.certify import certification_order, planned_items, power_at

    items, baseline, _ = _setup(3000)
    spec = start(VersionSpec(Template.plain("A: {{t}}"), "local/gemma3-270m", {}))
    cheaper = Arm(spec, est_cost=0.46)  # −54 %, seen 1.5 points behind on 200 search items, disagreeing on 21
    for n, i in enumerate(items[:200]):
        if n < 9:  # the baseline missed these, the candidate got them
            baseline[i.id] = ItemResult(item_id=i.id, sample=0, output="negative", scores={"exact": 0.0})
        cheaper.add(ItemResult(item_id=i.id, sample=0, output="x", scores={"exact": 0.0 if 9 <= n < 21 else 1.0}))
    safer = Arm(start(VersionSpec(Template.plain("B: {{t}}"), "local/gemma3-270m", {})), est_cost=0.55)  # −45 %, at parity
    for i in items[:72]:
        safer.add(ItemResult(item_id=i.id, sample=0, output="positive", scores={"exact": 1.0}))
    plan = dict(margin=0.03, alpha=0.025, power=0.8)
    plans = {a.candidate.sha: planned_items(a, baseline, ["exact"], **plan) for a in (cheaper, safer)}
    assert plans[cheaper.candidate.sha] > 1548 > plans[safer.candidate.sha]
    order = lambda available: certification_order([cheaper, safer], plans, available=available,  # noqa: E731
                                                   baseline_cost=1.0, alpha=0.025, power=0.8)
    assert order(1548) == [safer, cheaper]  # the cheaper one would pass about half the time
    assert order(100_000) == [cheaper, safer]  # with room for its items, the bigger saving first
    # calls are what is left, and an arm that samples 3 times per item gets a third of the items for them
    sampled = {cheaper.candidate.sha: 100_000 // 3, safer.candidate.sha: 100_000}
    assert order(sampled) == [cheaper, safer]
    assert order(4_500) == [cheaper, safer]  # 4,500 calls at one sample per item: room for the cheaper one
    assert order({cheaper.candidate.sha: 4_500 // 3, safer.candidate.sha: 4_500}) == [safer, cheaper]
    assert power_at(10**6, 1000, alpha=0.025, power=0.8) == 0.8
    assert 0.45 < power_at(500, 1000, alpha=0.025, power=0.8) < 0.55


async def test_a_hopeless_candidate_stops_early_and_leaves_its_calls_to_the_next():
    """4 points behind at margin 3: never clearly inferior at the early looks' strict level, but the
    chance of passing on the whole holdout soon falls below 2 %; the next candidate, equal, passes."""
    items = [EvalItem(id=i, inputs={"t": f"item {i}"}, expected="positive") for i in range(2000)]
    baseline = {i.id: ItemResult(item_id=i.id, sample=0, output="positive", scores={"exact": 1.0}) for i in items}
    behind = Arm(start(VersionSpec(Template.plain("A: {{t}}"), "local/gemma3-270m", {})), est_cost=0.0)
    equal = Arm(start(VersionSpec(Template.plain("B: {{t}}"), "local/gemma3-270m", {})), est_cost=0.0)
    for i in items[:100]:  # what the search saw: 4 misses in 100 for the first, none for the second
        behind.add(ItemResult(item_id=i.id, sample=0, output="x", scores={"exact": 0.0 if i.id % 25 == 0 else 1.0}))
        equal.add(ItemResult(item_id=i.id, sample=0, output="positive", scores={"exact": 1.0}))

    def respond(model, prompt):
        number = int(prompt.rsplit(" ", 1)[-1])
        return "negative" if prompt.startswith("A:") and number % 25 == 0 else "positive"

    events = []
    run = _run(items, baseline, Gateway(Settings(), provider=FakeProvider(responder=respond)), emit=lambda kind, data: events.append((kind, data)))
    first, second = await certify(ranked=[behind, equal], run=run, top=2)
    assert first.n_planned > 1500 and not first.passed
    assert "predictive power" in first.reason and "upper bound" not in first.reason, first.reason
    assert first.calls <= 0.6 * first.n_planned, first.reason  # it would have taken all of them
    assert second.passed and second.arm is equal
    assert [d["passed"] for k, d in events if k == "certify.finished"] == [False, True]


def test_predictive_power_of_a_test_under_way():
    import numpy as np
    import pytest

    from trimloop.evals.stats import predictive_power

    rng = np.random.default_rng(0)
    behind = rng.choice([1.0, -1.0, 0.0], size=400, p=[0.03, 0.07, 0.90])  # 4 points behind
    equal = rng.choice([1.0, -1.0, 0.0], size=400, p=[0.05, 0.05, 0.90])
    assert predictive_power(behind, 1600, margin=0.03, alpha=0.025) < 0.05
    assert predictive_power(equal, 1600, margin=0.03, alpha=0.025) > 0.8
    # the more items still to come, the more the data seen so far can be outweighed
    assert predictive_power(behind, 500, margin=0.03, alpha=0.025) < predictive_power(behind, 4000, margin=0.03,
                                                                                         alpha=0.025)
    assert predictive_power(np.zeros(50), 100, margin=0.03, alpha=0.025) == 1.0  # no disagreement at all
    with pytest.raises(ValueError, match="n_final"):
        predictive_power(equal, 400, margin=0.03, alpha=0.025)
