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
from trimloop.evals.gold import ColumnMapping, import_file
from trimloop.evals.report import compare_runs, comparison_frame, differences_frame, run_frame
from trimloop.evals.runner import run_eval

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
    async with Gateway(local_models, engine=engine) as gateway:
        base = await run_eval(engine, version_id=baseline, dataset_id=imported.dataset.id,
                              split="search", evaluators=evaluators, gateway=gateway, concurrency=4)
        cand = await run_eval(engine, version_id=candidate, dataset_id=imported.dataset.id,
                              split="search", evaluators=evaluators, gateway=gateway, concurrency=4)
        calls_before = gateway.stats.calls
        rerun = await run_eval(engine, version_id=candidate, dataset_id=imported.dataset.id,
                               split="search", evaluators=evaluators, gateway=gateway)
        assert rerun.id == cand.id and gateway.stats.calls == calls_before  # resumed: nothing repaid

    table = run_frame(engine, base.id)
    assert len(table) == 200 and table["error"].isna().all()
    assert (table["input_tokens"] > 100).all() and (table["output_tokens"] >= 1).all()
    assert (table["cost"] > 0).all() and (table["latency_s"] > 0).all()
    base_acc = base.summary["label_metrics"]["label"]["accuracy"]
    cand_acc = cand.summary["label_metrics"]["label"]["accuracy"]
    assert base_acc >= 0.75, base.summary
    assert base_acc - cand_acc >= 0.1, (base_acc, cand_acc)

    comparison = compare_runs(engine, base.id, cand.id, margin=0.02, alpha=0.05)
    frame = comparison_frame(comparison)
    print(frame.to_string())  # visible with -s: the table a reviewer would read
    assert frame.loc[0, "n"] == 200 and frame.loc[0, "verdict"] == "inferior"
    assert not comparison.passed
    assert comparison.candidate_cost_per_call < comparison.baseline_cost_per_call
    assert len(differences_frame(engine, base.id, cand.id)) == len(comparison.differing_items) > 0


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
