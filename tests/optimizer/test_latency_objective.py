"""Latency as an objective (issue 21): compared on interleaved fresh calls (control vs candidate),
never on the baseline's logged latencies."""

from __future__ import annotations

import math

from scipy.stats import norm

from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.latency import claim_line, latency_test
from trimloop.evals.runner import EvalItem, ItemResult
from trimloop.optimizer.certify import certify, evaluate_beside
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.objective import Objective
from trimloop.optimizer.race import Arm
from trimloop.optimizer.spec import VersionSpec, start
from trimloop.testing.fake_provider import FakeProvider, uniform

BASELINE = VersionSpec(Template.plain("Classify: {{t}}"), "local/gemma3-270m", {"max_tokens": 4})
SHORT = VersionSpec(Template.plain("Tag: {{t}}"), "local/gemma3-270m", {"max_tokens": 4})
SAME_SPEED = VersionSpec(Template.plain("Sort: {{t}}"), "local/gemma3-270m", {"max_tokens": 4})
FRESH = {"Classify": 0.12, "Tag": 0.06, "Sort": 0.12}  # median seconds per call, now


def answer(model: str, prompt: str) -> str:
    return "positive" if uniform(prompt.split(": ", 1)[1], seed=1) < 0.5 else "negative"


def latency(model: str, prompt: str, n: int) -> float:
    """Log-normal around the prompt's median (σ 0.2), a seeded draw per prompt and call."""
    return FRESH[prompt.split(":")[0]] * math.exp(0.2 * float(norm.ppf(uniform([prompt, n], seed=5))))


async def certified(candidate: VersionSpec, objective: Objective, *, control: bool = True):
    items = [EvalItem(id=i, inputs={"t": f"review {i}"}, baseline_output=answer("", f"x: review {i}")) for i in range(190)]
    # the logs were measured in production under load: 3× the fresh latency
    logged = {i.id: ItemResult(item_id=i.id, sample=0, output=i.baseline_output, scores={"matches_baseline": 1.0},
                               latency_s=3 * FRESH["Classify"]) for i in items}
    gateway = Gateway(Settings(), provider=FakeProvider(responder=answer, latency=latency))
    run = RunContext(baseline=BASELINE, search_items=items[:30], holdout_items=items[30:], baseline_results=logged,
                     evaluators=build_evaluators(["matches_baseline"]), gateway=gateway, margin=0.05,
                     control=control, objective=objective, concurrency=16)
    arm = Arm(start(candidate), est_cost=0.0)
    await evaluate_beside(run, arm, items[:30], on_result=arm.add, on_control=run.keep_control)
    [cert] = await certify(ranked=[arm], run=run, top=1)
    return cert


async def test_a_faster_prompt_is_certified_on_fresh_paired_calls_not_on_the_logged_latencies():
    cert = await certified(SHORT, Objective(kind="latency", latency="p95"))
    assert cert.passed, cert.reason
    test = cert.latency
    # the baseline's side is its fresh latency (0.12 s median, p95 ≈ 0.17 s), not the logged 0.36 s
    assert 0.12 < test.before_s < 0.27 and 0.4 < test.ratio < 0.8 and test.ratio_upper < 0.95
    assert test.n == cert.n_planned and "latency p95" in cert.reason
    line = claim_line(test, 0.0)
    assert line.startswith("p95 ") and "→" in line and line.endswith("cost +0 %")


async def test_a_prompt_that_is_not_faster_is_refused_under_a_latency_objective():
    cert = await certified(SAME_SPEED, Objective(kind="latency", latency="p50"))
    assert not cert.passed and cert.reason.startswith("latency: p50")
    assert 0.85 < cert.latency.ratio < 1.15


async def test_a_latency_objective_without_the_control_arm_makes_no_claim():
    cert = await certified(SHORT, Objective(kind="latency"), control=False)
    assert not cert.passed and "control" in cert.reason and cert.latency is None


def test_the_latency_test_reads_paired_items_and_a_minimum_effect():
    control = [ItemResult(item_id=i, sample=0, output="x", latency_s=1.0 + 0.01 * (i % 7)) for i in range(60)]
    faster = [ItemResult(item_id=i, sample=0, output="x", latency_s=0.97 * (1.0 + 0.01 * (i % 7))) for i in range(60)]
    slight = latency_test(control, faster, min_effect=0.05)
    assert abs(slight.ratio - 0.97) < 1e-9 and not slight.passed  # faster, but by less than the minimum effect
    assert latency_test(control, faster, min_effect=0.0).passed
    assert latency_test(control[:1], faster[:1]) is None


def test_time_to_first_token_is_compared_when_the_objective_reads_it():
    control = [ItemResult(item_id=i, sample=0, output="x", latency_s=1.0, ttft_s=0.4 + 0.01 * (i % 5)) for i in range(40)]
    candidate = [ItemResult(item_id=i, sample=0, output="x", latency_s=1.0, ttft_s=0.2 + 0.01 * (i % 3)) for i in range(40)]
    test = latency_test(control, candidate, ttft=True)
    assert test.stat == "ttft p50" and test.passed and 0.45 < test.ratio < 0.6
    assert not latency_test(control, candidate).passed  # the total latency is the same
    unstreamed = [ItemResult(item_id=i, sample=0, output="x", latency_s=1.0) for i in range(40)]
    assert latency_test(unstreamed, candidate, ttft=True) is None
