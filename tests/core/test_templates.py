import pytest

from trimloop.core.errors import MissingVariable, TemplateError, UnusedVariable
from trimloop.core.templates import Template, render


def test_chat_template_renders_each_message():
    template = Template.chat(("system", "Classify as {{labels}}."), ("user", "Text: {{ text }}"))
    assert template.variables() == ["labels", "text"]
    assert render(template, {"labels": "pos/neg", "text": "great"}) == [
        {"role": "system", "content": "Classify as pos/neg."},
        {"role": "user", "content": "Text: great"},
    ]


def test_plain_text_template_renders_to_a_string():
    assert render(Template.plain("Review: {{review}}\nSentiment:"), {"review": "meh"}) == "Review: meh\nSentiment:"


def test_values_stay_literal():
    out = render(Template.plain("{{a}}"), {"a": "<script>{{7*7}}</script> {{b}}"})
    assert out == "<script>{{7*7}}</script> {{b}}"


def test_missing_variable_names_it():
    with pytest.raises(MissingVariable) as info:
        render(Template.plain("{{a}} {{b}}"), {"a": 1})
    assert "b" in info.value.message and "a, b" in (info.value.hint or "")


def test_unused_variable_names_it():
    with pytest.raises(UnusedVariable) as info:
        render(Template.plain("{{a}}"), {"a": 1, "zzz": 2})
    assert "zzz" in info.value.message


@pytest.mark.parametrize("body", ["{% for x in y %}", "{{ a.b }}", "{{7*7}}", "{{ name", "{# note #}"])
def test_unsupported_syntax_is_refused_with_position(body):
    with pytest.raises(TemplateError) as info:
        Template.plain(f"line one\n{body}").variables()
    assert "line 2 col 1" in (info.value.where or "")


def test_template_shape_is_validated():
    with pytest.raises(ValueError, match="non-empty 'messages'"):
        Template(kind="chat", messages=[])
    with pytest.raises(ValueError):
        Template(kind="chat", messages=[{"role": "robot", "content": "x"}])
