"""End to end on real data and the bundled models: 200 SST-2 items, two prompts, a verdict.

Baseline: Gemma 3 270M (base model) with long instructions and six examples (≈0.87 accuracy in
the datasets README). Candidate: SmolLM2 135M with the same prompt, cheaper per token but near
chance with it (≈0.51). A person would reject the candidate; the report must say "inferior".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.datasets import dataset_items
from trimloop.evals.gold import ColumnMapping, import_file
from trimloop.evals.report import compare_runs
from trimloop.evals.runner import EvalItem, evaluate_items, store_eval_run, stored_results

from tests.evals.helpers import add_prompt, add_version

SST2 = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "sst2" / "test.jsonl"
EXAMPLES = [
    ("a gorgeous , witty , seductive movie .", "positive"),
    ("the movie is a disaster from start to finish .", "negative"),
    ("an utterly charming and hilarious film .", "positive"),
    ("it 's a bore , plain and simple .", "negative"),
    ("one of the best films of the year .", "positive"),
    ("the plot is nonsense and the acting is worse .", "negative"),
]
LONG = (
    "Classify the sentiment of each movie review sentence as positive or negative. A review is "
    "positive when the writer liked the film, praised it or recommends it; it is negative when "
    "the writer disliked it, mocked it or warns against it. Answer with one word.\n\n"
    + "".join(f"Review: {t}\nSentiment: {s}\n\n" for t, s in EXAMPLES)
    + "Review: {{text}}\nSentiment:"
)
PARAMS = {"temperature": 0, "max_tokens": 3, "stop": ["\n"]}
EVALUATORS = {"label": {"labels": ["positive", "negative"], "mode": "first"}}

pytestmark = pytest.mark.integration


@pytest.fixture
def sst2() -> Path:
    if not SST2.exists():
        pytest.skip(f"shared datasets not found at {SST2}")
    return SST2


async def test_runner_and_report_reach_the_verdict_a_person_would(engine, local_models, sst2) -> None:
    prompt = add_prompt(engine, "sst2-sentiment")
    template = {"kind": "text", "text": LONG}
    baseline = add_version(engine, prompt, template=template, model="local/gemma3-270m", params=PARAMS)
    candidate = add_version(engine, prompt, template=template, model="local/smollm2-135m",
                            params=PARAMS, labels=())
    with session_scope(engine) as session:
        imported = import_file(session, prompt_id=prompt, path=sst2, size=200, seed=4,
                               holdout_fraction=0.0,
                               mapping=ColumnMapping({"text": "text"}, expected="label"))
    assert imported.rows == 200 and not imported.problems
    evaluators = build_evaluators(EVALUATORS)
    with session_scope(engine) as session:
        items = [EvalItem(r.id, r.inputs, r.expected) for r in dataset_items(session, imported.dataset.id, "search")]
    runs = {}
    async with Gateway(local_models, engine=engine) as gateway:
        for version, model in ((baseline, "local/gemma3-270m"), (candidate, "local/smollm2-135m")):
            results = await evaluate_items(template=template, model=model, params=PARAMS, items=items,
                                           evaluators=evaluators, gateway=gateway, concurrency=4)
            with session_scope(engine) as session:
                run = store_eval_run(session, version_id=version, dataset_id=imported.dataset.id, split="search",
                                     results=results, evaluators=evaluators,
                                     expected={i.id: i.expected for i in items})
                runs[version] = (run.id, run.summary)
        calls_before = gateway.stats.calls
        await evaluate_items(template=template, model="local/smollm2-135m", params=PARAMS, items=items,
                             evaluators=evaluators, gateway=gateway)
        assert gateway.stats.calls == calls_before  # the response cache: nothing repaid

    with session_scope(engine) as session:
        table = stored_results(session, runs[baseline][0]).flat()
    assert len(table) == 200 and all(r.error is None for r in table)
    assert all(r.input_tokens > 100 and r.output_tokens >= 1 for r in table)
    assert all(r.cost > 0 and r.latency_s > 0 for r in table)
    base_acc = runs[baseline][1]["label_metrics"]["label"]["accuracy"]
    cand_acc = runs[candidate][1]["label_metrics"]["label"]["accuracy"]
    assert base_acc >= 0.75, runs[baseline][1]
    assert base_acc - cand_acc >= 0.1, (base_acc, cand_acc)

    with session_scope(engine) as session:
        comparison = compare_runs(session, runs[baseline][0], runs[candidate][0], margin=0.02, alpha=0.05)
    verdict = comparison.verdicts["label"]
    print(comparison.to_dict())  # visible with -s: what a reviewer would read
    assert verdict.n == 200 and verdict.verdict == "inferior"
    assert not comparison.passed
    assert comparison.candidate_cost_per_call < comparison.baseline_cost_per_call
    assert len(comparison.differing_items) > 0


async def test_llm_judges_run_end_to_end_on_the_bundled_models(engine, local_models) -> None:
    """Judgments from 135M/270M models are poor; this checks the plumbing, not their quality."""
    from trimloop.evals.evaluators import EvalContext, score_output

    judges = build_evaluators({
        "llm_judge": {"model": "local/smollm2-135m", "rubric": "The answer names the right capital."},
        "pairwise_judge": {"model": "local/gemma3-270m", "style": "text"},
    })
    async with Gateway(local_models, engine=engine) as gateway:
        ctx = EvalContext(output="Paris", baseline_output="Lyon",
                          inputs={"question": "What is the capital of France?"}, gateway=gateway)
        scores = await score_output(judges, ctx)
        assert gateway.stats.calls == 3  # one grade, two orders
    assert 0.0 <= scores["llm_judge"].value <= 1.0 and scores["llm_judge"].reason
    assert scores["pairwise_judge"].value in (0.0, 0.5, 1.0) and scores["pairwise_judge"].reason
