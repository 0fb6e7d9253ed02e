"""`rewrite` runs dspy.GEPA through the real Gateway (FakeProvider behind it): a scripted proposer
that writes a better, shorter instruction yields a `rewrite` candidate, and GEPA never spends past
its share of the search budget."""

from __future__ import annotations

import json

import pytest

from trimloop.core.gateway import Gateway
from trimloop.core.ledger import Ledger
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.runner import EvalItem
from trimloop.optimizer.moves.rewrite import Rewrite, front
from trimloop.optimizer.spec import MoveContext, VersionSpec, start
from trimloop.testing.fake_provider import FakeProvider

PROMPT = ("Please read the following movie review very carefully and then kindly tell me whether the overall "
          "sentiment that the reviewer expresses is positive or negative. Thank you so much!\n\n"
          "Review: {{text}}\nSentiment:")
BETTER = "Label the review positive or negative."
TASK, PROPOSER = "local/gemma3-270m", "local/smollm2-135m"
ITEMS = [EvalItem(id=i, inputs={"text": f"{'a good' if i % 2 else 'a dull'} film, take {i}"},
                  expected="positive" if i % 2 else "negative") for i in range(40)]


def responder(model: str, prompt) -> str:
    if model == PROPOSER:  # the reflection LM, through DSPy's JSONAdapter
        return json.dumps({"new_instruction": BETTER})
    assert isinstance(prompt, str), "a text template goes out as text"
    if prompt.startswith(BETTER):  # the better instruction reads the review
        return " positive" if "good" in prompt.rsplit("Review:", 1)[1] else " negative"
    return " positive"  # the verbose one always says positive: half wrong


def context(provider: FakeProvider, ledger: Ledger, budget: int) -> MoveContext:
    return MoveContext(models=[], resolve=None, gateway=Gateway(Settings(), provider=provider),
                       proposer_model=PROPOSER, ledger=ledger, items=ITEMS,
                       evaluators=build_evaluators({"label": {"labels": ["positive", "negative"]}}),
                       budget_calls=budget, concurrency=2)


async def test_gepa_proposes_the_better_shorter_instruction_through_the_gateway():
    provider = FakeProvider(responder=responder)
    ledger = Ledger(max_calls=500)
    root = start(VersionSpec(Template.plain(PROMPT), TASK, {"max_tokens": 3, "temperature": 0}))
    proposals = await Rewrite().propose(root, context=context(provider, ledger, budget=80))
    assert proposals, "GEPA's better instruction must become a rewrite candidate"
    best = proposals[0]
    assert best.version.template.text == f"{BETTER}\n\nReview: {{{{text}}}}\nSentiment:"
    assert [s["move"] for s in best.lineage] == ["rewrite"] and best.version.params == root.version.params
    detail = best.lineage[-1]["detail"]
    assert detail.startswith(f"GEPA by {PROPOSER}: instruction rewritten") and "→ 1.00 on" in detail
    proposer_calls = [c for c in provider.calls if c["model"] == PROPOSER]
    task_calls = [c for c in provider.calls if c["model"] == TASK]
    assert proposer_calls and task_calls and all(c["params"] == {"max_tokens": 3, "temperature": 0} for c in task_calls)
    assert ledger.calls == len(provider.calls) <= 80  # every call through the gateway, within the share
    assert any(BETTER not in c["prompt"] for c in task_calls)  # the seed was scored too


@pytest.mark.parametrize("budget", [30, 45, 64])
async def test_gepa_never_spends_past_its_share(budget):
    provider = FakeProvider(responder=responder)
    ledger = Ledger(max_calls=1000)
    root = start(VersionSpec(Template.plain(PROMPT), TASK, {"max_tokens": 3}))
    await Rewrite().propose(root, context=context(provider, ledger, budget=budget))
    assert 0 < ledger.calls <= budget and len(provider.calls) == ledger.calls


async def test_a_run_budget_smaller_than_the_share_caps_gepa():
    provider = FakeProvider(responder=responder)
    ledger = Ledger(max_calls=35)
    root = start(VersionSpec(Template.plain(PROMPT), TASK, {"max_tokens": 3}))
    try:
        await Rewrite().propose(root, context=context(provider, ledger, budget=400))
    except Exception as exc:  # the run's own cap may end the move: never by spending past it
        assert type(exc).__name__ == "SpendCapReached"
    assert ledger.calls <= 35


def test_front_prefers_shorter_at_equal_score():
    points = [("long", 0.9, 100.0), ("short", 0.9, 40.0), ("best", 1.0, 80.0), ("bad", 0.5, 90.0)]
    assert [p[0] for p in front(points)] == ["short", "best"]


async def test_rewrite_is_off_without_a_proposer_and_drops_proposals_that_lose_a_placeholder():
    silent = FakeProvider()
    off = MoveContext(models=[], resolve=None, gateway=Gateway(Settings(), provider=silent), items=ITEMS)
    root = start(VersionSpec(Template.plain(PROMPT), TASK, {"max_tokens": 3}))
    assert await Rewrite().propose(root, context=off) == [] and silent.attempts == 0

    def sneaky(model: str, prompt) -> str:
        return json.dumps({"new_instruction": "Use {{other}}."}) if model == PROPOSER else " positive"

    provider = FakeProvider(responder=sneaky)
    assert await Rewrite().propose(root, context=context(provider, Ledger(max_calls=100), budget=40)) == []
    assert any(c["model"] == PROPOSER for c in provider.calls)  # it asked, and the answer was refused


@pytest.mark.parametrize(("max_calls", "share"), [(120, 0.25), (200, 0.25), (400, 0.1)])
async def test_gepa_candidates_race_and_the_search_stays_within_its_budget(max_calls, share):
    from trimloop.core.catalog import resolve_model
    from trimloop.evals.runner import ItemResult
    from trimloop.optimizer.context import RunContext
    from trimloop.optimizer.search import SearchConfig, search

    settings = Settings()
    provider = FakeProvider(responder=responder)
    ledger = Ledger(max_calls=5000)
    evaluators = build_evaluators({"label": {"labels": ["positive", "negative"]}})
    baseline = VersionSpec(Template.plain(PROMPT), TASK, {"max_tokens": 3})
    base = {i.id: ItemResult(item_id=i.id, sample=0, output=" positive",
                             scores={"label": float(i.expected == "positive")}, output_tokens=1) for i in ITEMS}
    gateway = Gateway(settings, provider=provider)
    run = RunContext(baseline=baseline, search_items=ITEMS, holdout_items=[], baseline_results=base,
                     evaluators=evaluators, gateway=gateway, ledger=ledger, concurrency=2)
    moves = MoveContext(models=[], resolve=lambda m: resolve_model(settings, m), gateway=gateway,
                        proposer_model=PROPOSER, ledger=ledger)
    found = await search(run=run, context=moves, config=SearchConfig(rungs=(8, 16), max_calls=max_calls,
                                                                    rewrite_share=share))
    assert ledger.calls <= max_calls and found.calls <= max_calls  # GEPA's share and the race together
    gepa_calls = sum(1 for c in provider.calls if c["model"] == PROPOSER or c["prompt"].startswith(PROMPT[:40]))
    assert 0 < gepa_calls <= max_calls * share
    rewrites = [a for a in found.arms if a.candidate.label == "rewrite"]
    assert rewrites and rewrites[0].n > 0  # it raced
    assert rewrites[0].mean_score("label") == 1.0 and rewrites[0] in found.ranked


def test_the_rewrite_share_is_a_run_option_with_its_range_checked():
    from trimloop.core.errors import ConfigError
    from trimloop.optimizer.config import run_config

    settings = Settings(prompts={"triage": {"rewrite_share": 0.1}})
    assert run_config(settings, "triage").rewrite_share == 0.1
    assert run_config(settings, "other").rewrite_share == 0.25
    assert run_config(settings, "triage", {"rewrite_share": 0}).rewrite_share == 0
    with pytest.raises(ConfigError, match="rewrite_share"):
        run_config(settings, "triage", {"rewrite_share": 1.0})
