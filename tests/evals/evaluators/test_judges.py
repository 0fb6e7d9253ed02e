"""The LLM judges through the real gateway with a fake provider; the pairwise position swap."""

from __future__ import annotations

import pytest

from trimloop.core.errors import UserError
from trimloop.evals.evaluators import EvalContext, build_evaluators, score_output
from trimloop.evals.evaluators.judges import parse_grade, parse_verdict
from trimloop.testing.fake_provider import FakeProvider

from tests.evals.helpers import fake_gateway


def ctx(gateway, output="Paris", baseline="Lyon"):
    return EvalContext(output=output, inputs={"question": "Capital of France?"},
                       baseline_output=baseline, gateway=gateway)


async def test_llm_judge_grades_through_the_gateway() -> None:
    provider = FakeProvider(outputs=["8"])
    judges = build_evaluators({"llm_judge": {"model": "judge-model", "rubric": "Correct capital."}})
    scores = await score_output(judges, ctx(fake_gateway(provider)))
    assert scores["llm_judge"].value == pytest.approx(0.8)
    (call,) = provider.calls
    assert call["model"] == "judge-model"
    assert "Correct capital." in call["prompt"][0]["content"] and "Paris" in call["prompt"][0]["content"]


async def test_llm_judge_text_style_for_base_models_and_unparsable_grades() -> None:
    provider = FakeProvider(outputs=["I think it is good"])
    judges = build_evaluators({"llm_judge": {"model": "m", "rubric": "r", "style": "text", "scale": 5}})
    score = (await score_output(judges, ctx(fake_gateway(provider))))["llm_judge"]
    assert score.value == 0.0 and "no grade" in score.reason
    assert isinstance(provider.calls[0]["prompt"], str)


def test_parse_grade_and_verdict() -> None:
    assert parse_grade(" 7/10", 10) == 7
    assert parse_grade("Grade: 12 no, 4", 10) == 4
    assert parse_grade("4.5", 5) is None
    assert parse_verdict("Response B is better") == "B"
    assert parse_verdict("a tie, honestly") == "tie"
    assert parse_verdict("I cannot say") is None


def _responder(first_is_better: bool):
    """A judge that always prefers whichever response is shown first (position bias)."""
    def respond(model, prompt):
        return "A" if first_is_better else "B"
    return respond


async def test_pairwise_counts_only_position_consistent_verdicts() -> None:
    judges = build_evaluators({"pairwise_judge": {"model": "judge"}})
    biased = FakeProvider(responder=_responder(first_is_better=True))
    score = (await score_output(judges, ctx(fake_gateway(biased))))["pairwise_judge"]
    assert score.value == 0.5 and "inconsistent" in score.reason
    assert len(biased.calls) == 2
    first, second = (c["prompt"][0]["content"] for c in biased.calls)
    assert first.index("Lyon") < first.index("Paris")  # baseline shown first, then swapped
    assert second.index("Paris") < second.index("Lyon")


async def test_pairwise_consistent_win_and_loss() -> None:
    judges = build_evaluators({"pairwise_judge": {"model": "judge"}})
    # Prefers the response containing "Paris" in both orders.
    def prefers_paris(model, prompt):
        text = prompt[0]["content"]
        return "A" if text.index("Response A") < text.index("Paris") < text.index("Response B") else "B"
    win = (await score_output(judges, ctx(fake_gateway(FakeProvider(responder=prefers_paris)))))["pairwise_judge"]
    assert win.value == 1.0
    loss = (await score_output(judges, ctx(fake_gateway(FakeProvider(responder=prefers_paris)), output="Lyon?",
                                           baseline="Paris")))["pairwise_judge"]
    assert loss.value == 0.0


async def test_pairwise_skips_the_call_when_outputs_are_equal_and_needs_a_gateway() -> None:
    provider = FakeProvider()
    judges = build_evaluators({"pairwise_judge": {"model": "judge"}})
    assert (await score_output(judges, ctx(fake_gateway(provider), baseline="Paris")))["pairwise_judge"].value == 0.5
    assert provider.attempts == 0
    with pytest.raises(UserError, match="no gateway"):
        await score_output(judges, ctx(None))
