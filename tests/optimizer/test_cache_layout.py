"""cache_layout on real-world-shaped templates: referenced variables move after the static text under
a heading; a variable needed inside a sentence (or a value the text points back at) never moves;
Anthropic gets a cache_control breakpoint after the static part."""

from __future__ import annotations

from collections import Counter

import pytest

from trimloop.core.catalog import resolve_model
from trimloop.core.settings import Settings
from trimloop.core.templates import PLACEHOLDER, Template, render
from trimloop.optimizer.caching import BREAKPOINTS, static_prefix_tokens
from trimloop.optimizer.moves.cache_layout import CacheLayout, static_first
from trimloop.optimizer.spec import MoveContext, VersionSpec, start

RULES = "\n".join(f"Rule {i}: refunds for annual plans are prorated to the day the request reaches support, "
                  f"and duplicate charges are refunded in full once the bank reference is confirmed." for i in range(60))

MOVABLE = {
    "date first": Template.chat(("system", f"Today is {{{{date}}}}.\nYou are the support agent of Acme.\n{RULES}"),
                                ("user", "{{ticket}}")),
    "customer card": Template.chat(("system", f"Customer name: {{{{customer_name}}}}\nPlan: {{{{plan}}}}\n\n"
                                              f"You answer billing questions.\n{RULES}"), ("user", "{{question}}")),
    "text classifier": Template.plain(f"Current date: {{{{date}}}}\n\nClassify the ticket as billing, bug or account.\n"
                                      f"{RULES}\n\nTicket: {{{{ticket}}}}\nLabel:"),
    "language preference": Template.chat(("system", f"The user's preferred language is {{{{language}}}}.\n\n"
                                                    f"You are a travel assistant.\n{RULES}"), ("user", "{{message}}")),
    "bulleted profile": Template.chat(("system", f"- Account tier: {{{{tier}}}}\n- Region = {{{{region}}}}\n"
                                                 f"Follow the policy below.\n{RULES}"), ("user", "{{question}}")),
    "document heading": Template.chat(("system", f"Retrieved notes:\n{{{{notes}}}}\nAnswer from the policy.\n{RULES}"),
                                      ("user", "{{question}}")),
}
NEVER = {
    "tone inside a sentence": Template.chat(("system", f"Write a {{{{tone}}}} reply to the customer email.\n{RULES}"),
                                            ("user", "{{email}}")),
    "translate into": Template.plain(f"Translate the following text into {{{{language}}}}. Keep the formatting.\n"
                                     f"{RULES}\n\nText: {{{{text}}}}"),
    "persona mid-sentence": Template.chat(("system", f"You are {{{{persona}}}}, a helpful assistant for Acme.\n{RULES}"),
                                          ("user", "{{q}}")),
    "count in instruction": Template.plain(f"Summarize the article in {{{{n}}}} sentences.\n{RULES}\n\nArticle: {{{{article}}}}"),
    "greeting": Template.chat(("system", f"Hi {{{{name}}}}, thanks for writing to Acme.\n{RULES}"), ("user", "{{q}}")),
    "two variables in a line": Template.chat(("system", f"Plan the trip from {{{{origin}}}} to {{{{destination}}}}.\n{RULES}"),
                                             ("user", "{{q}}")),
    "answer in language": Template.plain(f"Answer in {{{{language}}}}:\n{RULES}\n\nQuestion: {{{{q}}}}"),
    "text points back": Template.chat(("system", f"Document:\n{{{{document}}}}\nSummarize the document above.\n{RULES}"),
                                      ("user", "{{q}}")),
    "already static": Template.chat(("system", f"You sort tickets.\n{RULES}"), ("user", "Ticket: {{ticket}}")),
}


def values(template: Template) -> dict[str, str]:
    return {name: f"<{name} value>" for name in template.variables()}


@pytest.mark.parametrize("name", sorted(MOVABLE))
def test_referenced_variables_move_after_the_static_text_and_every_line_survives(name: str) -> None:
    original = MOVABLE[name]
    layout = static_first(original)
    assert layout is not None, name
    after = layout.template
    assert Counter(original.variables()) == Counter(after.variables())  # same placeholders, once each
    assert static_prefix_tokens(after) > static_prefix_tokens(original) + 1000
    rendered_before = render(original, values(original))
    rendered_after = render(after, values(after))
    text_before = rendered_before if isinstance(rendered_before, str) else "\n".join(m["content"] for m in rendered_before)
    text_after = rendered_after if isinstance(rendered_after, str) else "\n".join(m["content"] for m in rendered_after)
    lines_before = {line.strip().lstrip("-• ").strip() for line in text_before.split("\n") if line.strip()}
    lines_after = {line.strip().lstrip("-• ").strip() for line in text_after.split("\n") if line.strip()}
    assert lines_before <= lines_after and lines_after - lines_before == {"Context:"}
    if original.kind == "text":  # the completion cue and the input stay last
        assert after.text.endswith("Ticket: {{ticket}}\nLabel:") and "Context:\nCurrent date: {{date}}" in after.text


@pytest.mark.parametrize("name", sorted(NEVER))
def test_a_variable_needed_in_place_never_moves(name: str) -> None:
    assert static_first(NEVER[name]) is None, name


def context() -> MoveContext:
    settings = Settings()
    return MoveContext(models=[], resolve=lambda m: resolve_model(settings, m))


async def test_openai_gets_the_reorder_and_no_breakpoint() -> None:
    proposals = await CacheLayout().propose(start(VersionSpec(MOVABLE["date first"], "gpt-4.1-mini", {})), context=context())
    assert [p.lineage[-1]["variant"] for p in proposals] == ["reorder"]
    step = proposals[0].lineage[-1]
    assert "moved {{date}} under a 'Context:' heading" in step["detail"] and "openai cache" in step["detail"]
    assert BREAKPOINTS not in proposals[0].version.params and not proposals[0].same_text


async def test_anthropic_gets_a_breakpoint_after_the_static_message() -> None:
    static = NEVER["already static"]
    proposals = await CacheLayout().propose(start(VersionSpec(static, "anthropic/claude-sonnet-4-5", {})),
                                            context=context())
    assert [p.lineage[-1]["variant"] for p in proposals] == ["breakpoint"]
    only = proposals[0]
    assert only.version.template == static and only.same_text  # identical text: a check, not a test
    assert only.version.params[BREAKPOINTS] == [{"location": "message", "index": 0}]
    reordered = await CacheLayout().propose(start(VersionSpec(MOVABLE["date first"], "anthropic/claude-sonnet-4-5", {})),
                                            context=context())
    assert [p.lineage[-1]["variant"] for p in reordered] == ["reorder"]
    messages = reordered[0].version.template.messages
    assert [m.role for m in messages] == ["system", "system", "user"]  # the moved context: its own block
    assert not PLACEHOLDER.search(messages[0].content) and messages[1].content == "Context:\nToday is {{date}}."
    assert reordered[0].version.params[BREAKPOINTS] == [{"location": "message", "index": 0}]


async def test_nothing_is_proposed_where_the_cache_would_not_serve_it() -> None:
    short = Template.chat(("system", "Today is {{date}}.\nSort tickets."), ("user", "{{ticket}}"))
    assert await CacheLayout().propose(start(VersionSpec(short, "gpt-4.1-mini", {})), context=context()) == []
    assert await CacheLayout().propose(start(VersionSpec(MOVABLE["date first"], "local/smollm2-135m", {})),
                                       context=context()) == []  # no provider cache known
