"""trim_output: a max_tokens cap never below what a correct answer needed, answer-only where the
outputs chatter, compact JSON, and no chain of thought when only the final answer is read."""

from __future__ import annotations

import json

import pytest

from trimloop.core.catalog import count_tokens, resolve_model
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.optimizer.moves.trim_output import (
    TrimOutput,
    answer_of,
    answer_span,
    compact_json,
    drop_cot,
    needs,
)
from trimloop.optimizer.spec import Answer, MoveContext, OutputFact, VersionSpec, start
from trimloop.testing.sentiment import VERBOSE

LABELS = Answer(kind="label", labels=("positive", "negative"))
RAMBLE = "\n\nReview: The next film was a long one and the critic wrote many words about it."


def fact(text: str, good: bool = True, reasoning: int = 0) -> OutputFact:
    return OutputFact(text=text, output_tokens=count_tokens(text) + reasoning, reasoning_tokens=reasoning, good=good)


def context(outputs: list[OutputFact], answer: Answer | None = LABELS) -> MoveContext:
    return MoveContext(models=[], resolve=lambda m: resolve_model(Settings(), m), outputs=outputs, answer=answer)


def root(template: Template, max_tokens: int = 64):
    return start(VersionSpec(template, "local/gemma3-270m", {"max_tokens": max_tokens, "temperature": 0}))


async def test_the_cap_keeps_every_well_scored_answer_with_headroom() -> None:
    outputs = [fact(f" {label}{RAMBLE}") for label in ["positive", "negative"] * 4] + [fact(" meh" + RAMBLE, good=False)]
    proposals = await TrimOutput().propose(root(Template.plain(VERBOSE)), context=context(outputs))
    cap = next(p for p in proposals if p.lineage[-1]["variant"] == "cap")
    limit = cap.version.params["max_tokens"]
    needed = max(count_tokens(" positive"), count_tokens(" negative"))
    assert needed <= limit < 64 and limit >= needed * 1.25
    assert cap.version.template == Template.plain(VERBOSE)  # only the parameter changes
    assert cap.outlook is not None and cap.outlook.output_tokens < count_tokens(" positive" + RAMBLE)
    assert "max_tokens 64 →" in cap.lineage[-1]["detail"] and "well-scored answer needed" in cap.lineage[-1]["detail"]


async def test_no_cap_when_outputs_already_fit_or_too_few_scored_well() -> None:
    short = [fact(" positive"), fact(" negative")] * 4
    assert await TrimOutput().propose(root(Template.plain(VERBOSE), max_tokens=3), context=context(short)) == []
    few = [fact(" positive" + RAMBLE)] * 3 + [fact(" meh" + RAMBLE, good=False)] * 10
    assert needs(few, LABELS) is None
    assert await TrimOutput().propose(root(Template.plain(VERBOSE)), context=context(few)) == []


async def test_chatter_around_the_answer_gets_an_answer_only_instruction() -> None:
    chatty = [fact(f"Sure! After reading it closely, I think the sentiment of this review is {label}. "
                   "Let me know if you need anything else.") for label in ["positive", "negative"] * 4]
    template = Template.chat(("system", "Classify the review as positive or negative."), ("user", "{{text}}"))
    proposals = await TrimOutput().propose(root(template), context=context(chatty))
    brief = next(p for p in proposals if p.lineage[-1]["variant"] == "brevity")
    assert brief.version.template.messages[0].content == ("Classify the review as positive or negative. "
                                                          "Answer with the label only.")
    assert brief.version.template.messages[1].content == "{{text}}"
    assert "added 'Answer with the label only.'" in brief.lineage[-1]["detail"]
    # an evaluator that reads the whole text: chatter may be what it scores, so no instruction, and
    # a cap above the whole outputs would cut nothing
    assert await TrimOutput().propose(root(template), context=context(chatty, answer=None)) == []


async def test_text_templates_keep_their_completion_cue_last() -> None:
    chatty = [fact(f" I would say {label}, because the words are clear and nothing else matters here.")
              for label in ["positive", "negative"] * 4]
    proposals = await TrimOutput().propose(root(Template.plain(VERBOSE)), context=context(chatty))
    text = next(p for p in proposals if p.lineage[-1]["variant"] == "brevity").version.template.text
    assert text.endswith("Review: {{text}}\nSentiment:") and "Answer with the label only." in text.split("\n\n")[0]


INDENTED = Template.chat(
    ("system", "Extract the restaurant's fields as JSON, indented with two spaces.\nExample:\n"
               + json.dumps({"name": "The Punter", "food": "Indian"}, indent=2)),
    ("user", "Sentence: {{text}}"))


async def test_indented_json_is_asked_compact_and_its_examples_compacted() -> None:
    outputs = [fact(json.dumps({"name": f"Place {i}", "food": "Thai", "area": "riverside"}, indent=2)) for i in range(6)]
    json_answer = answer_of(build_evaluators(["json_fields"]))
    assert json_answer == Answer(kind="json")
    proposals = await TrimOutput().propose(root(INDENTED, max_tokens=200), context=context(outputs, json_answer))
    compact = next(p for p in proposals if p.lineage[-1]["variant"] == "compact_json")
    system = compact.version.template.messages[0].content
    assert '{"name":"The Punter","food":"Indian"}' in system and "indented" not in system
    assert "Write the JSON on one line" in system
    assert compact.version.template.messages[1].content == "Sentence: {{text}}"
    assert compact.outlook.output_tokens < min(f.output_tokens for f in outputs)
    compact_len = count_tokens(json.dumps({"name": "Place 0", "food": "Thai", "area": "riverside"}, separators=(",", ":")))
    assert compact.version.params["max_tokens"] >= compact_len  # never below the compact answer


def test_compact_json_leaves_placeholders_and_prose_alone() -> None:
    template = Template.plain('Answer like {\n  "a": 1\n}\nInput: {{x}} {not json}\nJSON:')
    assert compact_json(template).text == 'Answer like {"a":1}\nInput: {{x}} {not json}\nJSON:'


COT = Template.chat(("system", "Solve the math word problem. Think step by step, then give the final answer."),
                    ("user", "{{question}}"))


async def test_a_reasoning_request_is_dropped_only_when_the_final_answer_is_all_that_is_read() -> None:
    outputs = [fact(f"First, 3 + 4 = 7. Then 7 × {i} = {7 * i}. The answer is {7 * i}.") for i in range(2, 9)]
    numeric = answer_of(build_evaluators(["numeric"]))
    proposals = await TrimOutput().propose(root(COT, max_tokens=256), context=context(outputs, numeric))
    plain = next(p for p in proposals if p.lineage[-1]["variant"] == "no_reasoning")
    system = plain.version.template.messages[0].content
    assert "step by step" not in system and system.startswith("Solve the math word problem.")
    assert system.endswith("Answer with the final number only.")
    assert "dropped the request for reasoning ('Think step by step, then give the final answer.')" in \
        plain.lineage[-1]["detail"]
    exact = answer_of(build_evaluators(["exact"]))
    assert exact is None
    kept = await TrimOutput().propose(root(COT, max_tokens=256), context=context(outputs, exact))
    assert all(p.lineage[-1]["variant"] != "no_reasoning" for p in kept)


@pytest.mark.parametrize("text", [
    "Let's think step by step.", "Explain your reasoning before answering.", "First, show your work.",
    "Reason carefully before you answer.", "Think carefully before answering the question.",
])
def test_reasoning_requests_are_recognised(text: str) -> None:
    template = Template.chat(("system", f"Classify it. {text} Use one word."), ("user", "{{t}}"))
    without, dropped = drop_cot(template)
    assert dropped and "Classify it." in without.messages[0].content and "Use one word." in without.messages[0].content


def test_the_answer_span_is_what_the_evaluator_reads() -> None:
    assert answer_span("It is Positive, not negative.", LABELS) == (6, 14)
    assert answer_span("3 apples then 12.5 pears", Answer(kind="number")) == (14, 18)
    assert answer_span('Here: {"a": [1, 2]} done', Answer(kind="json")) == (6, 19)
    assert answer_span("nothing", LABELS) is None
    labels = answer_of(build_evaluators({"label": {"labels": ["yes", "no"]}}))
    assert labels == Answer(kind="label", labels=("yes", "no"))
    assert answer_of(build_evaluators(["numeric", "json_valid"])) is None  # two kinds: read differently
