"""Moves: each proposes valid, cheaper-looking variants that keep every placeholder."""

from __future__ import annotations

import pytest

from trimloop.core.catalog import resolve_model
from trimloop.core.settings import ModelConfig, Settings
from trimloop.core.templates import Template
from trimloop.optimizer.moves import PruneExamples, Retarget, Shorten
from trimloop.optimizer.moves.retarget import chat_to_text
from trimloop.optimizer.moves.shorten import label_descriptions
from trimloop.optimizer.spec import MoveContext, VersionSpec, start
from trimloop.testing.sentiment import VERBOSE


@pytest.fixture
def context():
    settings = Settings(models={"acme/chat-only": ModelConfig(via_litellm=True, api_base="http://127.0.0.1:9/v1",
                                                              input_per_mtok=0.0001, output_per_mtok=0.0001)})
    return MoveContext(models=["local/smollm2-135m", "local/gemma3-270m", "acme/chat-only"],
                       resolve=lambda m: resolve_model(settings, m))


def root(template, model="local/gemma3-270m"):
    return start(VersionSpec(template, model, {"max_tokens": 3}))


async def test_retarget_proposes_only_cheaper_models_and_keeps_text_where_served(context):
    proposals = await Retarget().propose(root(Template.plain(VERBOSE)), context=context)
    by_model = {p.version.model: p for p in proposals}
    assert set(by_model) == {"local/smollm2-135m", "acme/chat-only"}  # gemma is the baseline itself
    assert by_model["local/smollm2-135m"].version.template.kind == "text"  # llama.cpp serves completions
    chat = by_model["acme/chat-only"].version.template
    assert chat.kind == "chat" and chat.messages[0].content == VERBOSE
    assert by_model["acme/chat-only"].lineage[-1]["detail"].endswith("(text → chat template)")
    assert await Retarget().propose(root(Template.plain("x {{a}}"), "acme/chat-only"), context=context) == []


def test_chat_to_text_turns_shots_into_input_output_lines():
    template = Template.chat(("system", "Classify."), ("user", "great"), ("assistant", "positive"),
                             ("user", "{{text}}"))
    assert chat_to_text(template).text == "Classify.\n\nInput: great\nOutput: positive\n\nInput: {{text}}\nOutput:"


async def test_shorten_keeps_placeholders_rules_and_the_completion_cue(context):
    proposals = await Shorten().propose(root(Template.plain(VERBOSE)), context=context)
    assert proposals, "the verbose prompt must get shorter"
    for p in proposals:
        text = p.version.template.text
        assert "{{text}}" in text and text.rstrip().endswith("Review: {{text}}\nSentiment:")
        assert "positive or negative" in text and len(text) < len(VERBOSE)
    medium = next(p for p in proposals if p.lineage[-1]["detail"].startswith("medium"))
    assert "Please" not in medium.version.template.text and "Thank you" not in medium.version.template.text


async def test_shorten_compresses_instructions_but_never_examples_or_user_turns(context):
    template = Template.chat(("system", "Answer with one word only. Be brief. Answer with one word only."),
                             ("user", "Please, really: {{t}}"))
    proposals = await Shorten().propose(root(template, "local/smollm2-135m"), context=context)
    medium = next(p for p in proposals if p.lineage[-1]["detail"].startswith("medium"))
    assert medium.version.template.messages[0].content == "Answer with one word only. Be brief."
    assert medium.version.template.messages[1].content == "Please, really: {{t}}"
    text = Template.plain("Please classify it. Thank you!\n\nReview: a very, very long and really dull film\n"
                          "Sentiment: negative\n\nReview: {{text}}\nSentiment:")
    for p in await Shorten().propose(root(text), context=context):
        assert "Review: a very, very long and really dull film\nSentiment: negative" in p.version.template.text


def test_long_label_descriptions_are_cut_to_their_first_clause():
    text = "- billing: Questions about invoices, charges, refunds, payments and anything about money.\n- bug: Broken."
    assert label_descriptions(text) == "- billing: Questions about invoices\n- bug: Broken."


async def test_prune_examples_finds_key_value_shots_and_keeps_label_diversity(context):
    proposals = await PruneExamples().propose(root(Template.plain(VERBOSE)), context=context)
    details = [p.lineage[-1]["detail"] for p in proposals]
    assert details == ["keep 0 of 4 examples", "keep 1 of 4 examples", "keep 2 of 4 examples"]
    two = proposals[2].version.template.text
    assert "Sentiment: positive" in two and "Sentiment: negative" in two
    zero = proposals[0].version.template.text
    assert "examples" not in zero and zero.endswith("Review: {{text}}\nSentiment:")


async def test_prune_examples_on_chat_pairs_and_tags(context):
    chat = Template.chat(("system", "Classify."), ("user", "a"), ("assistant", "x"), ("user", "b"),
                         ("assistant", "y"), ("user", "c"), ("assistant", "x"), ("user", "{{q}}"))
    one = (await PruneExamples().propose(root(chat, "local/smollm2-135m"), context=context))[1]
    assert [m.role for m in one.version.template.messages] == ["system", "user", "assistant", "user"]
    tagged = Template.plain("Do it.\n<example>a → x</example>\n<example>b → y</example>\n<example>c → z</example>\n{{q}}")
    pruned = await PruneExamples().propose(root(tagged), context=context)
    assert [p.version.template.text.count("<example>") for p in pruned] == [0, 1, 2]


async def test_moves_compose_with_lineage(context):
    first = (await Retarget().propose(root(Template.plain(VERBOSE)), context=context))[0]
    child = (await PruneExamples().propose(first, context=context))[0]
    assert [s["move"] for s in child.lineage] == ["retarget", "prune_examples"]
    assert child.parent_sha == root(Template.plain(VERBOSE)).sha != child.sha


def test_every_move_has_the_one_async_propose_signature():
    import inspect

    from trimloop.optimizer.moves import MOVES, Move

    assert {cls.name for cls in MOVES} == {"retarget", "reasoning", "shorten", "prune_examples", "trim_output", "cache_layout",
                                         "rewrite"}
    for cls in MOVES:
        move = cls()
        assert isinstance(move, Move) and inspect.iscoroutinefunction(move.propose), cls
        assert list(inspect.signature(move.propose).parameters) == ["candidate", "context"], cls
    assert [cls.name for cls in MOVES if cls.calls_model] == ["rewrite"]  # the one that costs calls


async def test_answer_format_states_shows_and_stops_the_answer(context):
    from dataclasses import replace

    from trimloop.optimizer.moves import AnswerFormat
    from trimloop.core.templates import render

    chat = Template.chat(("system", "Sort the support ticket."), ("user", "Ticket: {{ticket}}"))
    root = start(VersionSpec(chat, "local/smollm2-135m", {"temperature": 0, "max_tokens": 8}))
    assert await AnswerFormat().propose(root, context=context) == []  # no allowed answers known: nothing
    known = replace(context, answers=["billing", "bug", "other"],
                    examples=[({"ticket": "charged twice"}, "billing"), ({"ticket": "app crashes"}, "bug")])
    proposals = await AnswerFormat().propose(root, context=known)
    details = [p.lineage[-1]["detail"] for p in proposals]
    assert len(proposals) == 5 and all(p.version.params["stop"] == ["\n"] for p in proposals)
    assert all(p.version.params["max_tokens"] == 8 and p.label == "answer_format" for p in proposals)
    rule = "Answer with exactly one of: billing, bug, other."
    assert all(rule in "\n".join(p.version.template.parts()) for p in proposals)
    completion = next(p for p, d in zip(proposals, details) if d.endswith("search split") and "completion" in d)
    text = render(completion.version.template, {"ticket": "refund please"})
    assert text.endswith("Input: Ticket: refund please\nAnswer:") and "Input: Ticket: charged twice\nAnswer: billing" in text
    turns = next(p for p, d in zip(proposals, details) if d.endswith("as chat turns"))
    roles = [(m.role, m.content) for m in turns.version.template.messages]
    assert roles[1:5] == [("user", "Ticket: charged twice"), ("assistant", "billing"), ("user", "Ticket: app crashes"),
                          ("assistant", "bug")] and roles[-1] == ("user", "Ticket: {{ticket}}")
    on_base = await AnswerFormat().propose(start(VersionSpec(Template.plain("Ticket: {{ticket}}\nTeam:"),
                                                             "local/gemma3-270m", {})), context=known)
    assert [p.version.template.kind for p in on_base] == ["text", "text"]  # a text prompt: rule, rule + reminder
    assert on_base[0].version.params["max_tokens"] >= 4  # unset: room for the longest label
