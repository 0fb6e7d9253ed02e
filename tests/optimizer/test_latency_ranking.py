"""Latency-aware racing (issue 21): under a latency objective candidates are picked by estimated
latency (prompt tokens + 20 × output tokens) and ranked by the latency measured against the
control arm on the same items × their chance of holding quality — not by cost."""

from __future__ import annotations

import math

from scipy.stats import norm

from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.runner import EvalItem, ItemResult
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.objective import Objective
from trimloop.optimizer.race import Arm, compare
from trimloop.optimizer.search import (DECODE_WEIGHT, SearchConfig, estimate_latency, prospect, rank, search,
                                       select_arms)
from trimloop.optimizer.spec import MoveContext, VersionSpec, start
from trimloop.testing.fake_provider import FakeProvider, uniform

LONG = "Classify the sentiment of this review as positive or negative, with care and attention: {{t}}"
BASELINE = VersionSpec(Template.plain(LONG), "local/gemma3-270m", {"max_tokens": 8})
# cheaper (a much shorter prompt) but the model still writes 8 tokens: slower than CAPPED
CHEAP = VersionSpec(Template.plain("Sentiment: {{t}}"), "local/gemma3-270m", {"max_tokens": 8})
# the same long prompt, its output capped: dearer than CHEAP, and faster
CAPPED = VersionSpec(Template.plain(LONG.replace(": {{t}}", ":  {{t}}")), "local/gemma3-270m", {"max_tokens": 2})


def test_the_latency_estimate_weighs_output_tokens_twenty_times_a_prompt_token():
    inputs = [{"t": "a fine film"}]
    base = estimate_latency(BASELINE, inputs, output_tokens=8)
    assert base - estimate_latency(BASELINE, inputs, output_tokens=2) == DECODE_WEIGHT * 6
    assert estimate_latency(CAPPED, inputs, 2) < estimate_latency(CHEAP, inputs, 8) < base


def test_with_speed_estimates_the_fastest_candidates_are_picked_not_the_cheapest():
    fast, cheap = start(BASELINE).then(CAPPED, "trim_output", "cap"), start(BASELINE).then(CHEAP, "shorten", "s")
    cost = {fast.sha: 9.0, cheap.sha: 2.0}
    speed = {fast.sha: 60.0, cheap.sha: 170.0}
    latency = Objective(kind="latency")
    assert [a.candidate for a in select_arms([fast, cheap], cost, 10.0, 1, objective=latency)] == [cheap]
    assert [a.candidate for a in select_arms([fast, cheap], cost, 10.0, 1, objective=latency, speed=speed)] == [fast]


def _arm(ratio: float | None, agree: int, disagree: int, est_cost: float) -> Arm:
    arm = Arm(start(CHEAP if est_cost < 5 else CAPPED), est_cost=est_cost)
    for i in range(agree + disagree):
        arm.add(ItemResult(item_id=i, sample=0, output="x", scores={"acc": 1.0 if i < agree else 0.0}))
    arm.evidence["acc"] = compare({i: [1.0] for i in range(agree + disagree)}, arm.scores("acc"),  # type: ignore[assignment]
                                  margin=0.05, alpha=0.05)
    arm.speed_ratio = ratio
    return arm


def test_a_latency_race_ranks_by_measured_speed_times_the_chance_of_holding_quality():
    cheap_slow = _arm(0.9, agree=40, disagree=0, est_cost=1.0)
    dear_fast = _arm(0.4, agree=40, disagree=0, est_cost=9.0)
    fast_doubtful = _arm(0.3, agree=32, disagree=8, est_cost=9.0)
    unmeasured = _arm(None, agree=40, disagree=0, est_cost=9.0)
    assert rank([cheap_slow, dear_fast], 10.0)[0] is cheap_slow  # by cost
    assert rank([cheap_slow, dear_fast, fast_doubtful, unmeasured], 10.0, latency=True) == \
        [dear_fast, cheap_slow, fast_doubtful, unmeasured]
    assert 0.5 < prospect(dear_fast, 10.0, latency=True) <= 0.6 and prospect(unmeasured, 10.0, latency=True) == 0.0
    assert prospect(_arm(1.2, agree=40, disagree=0, est_cost=9.0), 10.0, latency=True) == 0.0  # slower: no gain


def answer(model: str, prompt: str) -> str:
    return "positive" if uniform(prompt.rsplit(":", 1)[1].strip(), seed=1) < 0.5 else "negative"


def latency(model: str, prompt: str, n: int) -> float:
    """The fake model's time by the prompt's shape (CAPPED has two spaces before the review)."""
    base = 0.030 if "attention:  " in prompt else 0.060 if prompt.startswith("Sentiment") else 0.070
    return base * math.exp(0.1 * float(norm.ppf(uniform([prompt, n], seed=4))))


async def test_the_search_measures_each_arm_against_the_control_and_ranks_the_faster_one_first():
    items = [EvalItem(id=i, inputs={"t": f"review {i}"}, baseline_output=answer("", f"x: review {i}")) for i in range(24)]
    logged = {i.id: ItemResult(item_id=i.id, sample=0, output=i.baseline_output, scores={"matches_baseline": 1.0},
                               latency_s=1.0) for i in items}
    gateway = Gateway(Settings(), provider=FakeProvider(responder=answer, latency=latency))
    run = RunContext(baseline=BASELINE, search_items=items, holdout_items=[], baseline_results=logged,
                     evaluators=build_evaluators(["matches_baseline"]), gateway=gateway, margin=0.05, control=True,
                     objective=Objective(kind="latency"), concurrency=1)
    from trimloop.core.catalog import resolve_model

    context = MoveContext(models=[], resolve=lambda m: resolve_model(Settings(), m), seed=0)
    root = start(BASELINE)
    cheap, capped = root.then(CHEAP, "shorten", "short"), root.then(CAPPED, "trim_output", "cap")
    found = await search(run=run, context=context, candidates=[cheap, capped],
                         config=SearchConfig(rungs=(8, 16), objective=Objective(kind="latency")))
    ratios = {a.candidate.sha: a.speed_ratio for a in found.arms}
    assert 0.35 < ratios[capped.sha] < 0.5 and 0.75 < ratios[cheap.sha] < 0.95  # vs the control's 0.07 s
    assert found.ranked[0].candidate.sha == capped.sha
    await gateway.aclose()
