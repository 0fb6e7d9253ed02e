"""Prompt files: parsing, bad input with file:line, write-back with atomic label moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.connectors.helpers import TRIAGE_V1, make_store
from trimloop.connectors.base import Problem, PromptItem
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.files_format import parse_prompt_file, render_prompt_file
from trimloop.connectors.safe_yaml import MAX_FILE_BYTES
from trimloop.core.errors import ConfigError, NotFound, TemplateError, UserError
from trimloop.core.templates import Template


def connector(root: Path) -> FilesConnector:
    return FilesConnector(name="local", options={"path": str(root)})


def test_chat_prompt_file_parses_roles_model_params_labels() -> None:
    parsed = parse_prompt_file(TRIAGE_V1.encode(), "triage/1.md")
    assert parsed.model == "gpt-4o-mini"
    assert parsed.params == {"temperature": 0, "max_tokens": 8}
    assert parsed.labels == ["production"]
    assert [(m.role, m.content) for m in parsed.template.messages or []] == [
        ("system", "You sort support tickets into billing, bug or other."),
        ("user", "Ticket: {{ticket}}"),
    ]


def test_text_prompt_file_and_round_trip() -> None:
    parsed = parse_prompt_file(b"---\nmodel: local/gemma3-270m\n---\nQ: {{q}}\nA:", "qa/1.md")
    assert parsed.template.kind == "text" and parsed.template.text == "Q: {{q}}\nA:"
    chat = Template.chat(("system", "Be brief.\n\nVery."), ("user", "{{x}}"))
    again = parse_prompt_file(render_prompt_file(chat, "m", {"temperature": 0.5}).encode(), "x")
    assert again.template == chat and again.params == {"temperature": 0.5}


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        (b"model: x\n", "p.md:1", "front matter"),
        (b"---\nmodel: x\nno end", "p.md:1", "not closed"),
        (b"---\nmodel: [x\n---\nhi", "p.md:", "not valid YAML"),
        (b"---\nparams: {}\n---\nhi", "p.md:2", "'model'"),
        (b"---\nmodel: m\nparams: 3\n---\nhi", "p.md:3", "'params' must be a mapping"),
        (b"---\nmodel: m\ncolour: red\n---\nhi", "p.md:2", "unknown front matter key"),
        (b"---\nmodel: m\n---\n\n", "p.md:4", "body is empty"),
        (b"---\nmodel: m\nkind: chat\n---\nintro\nuser:\nhi", "p.md:5", "text before the first role"),
        (b"---\nmodel: m\n---\nsystem:\n\nuser:\nhi", "p.md:4", "empty system message"),
        (b"---\nmodel: m\n---\nok\n\xff\xfe bad", "p.md:5", "not UTF-8"),
    ],
)
def test_malformed_prompt_files_name_file_and_line(body: bytes, where: str, words: str | None) -> None:
    with pytest.raises(UserError) as info:
        parse_prompt_file(body, "p.md")
    assert info.value.where is not None and info.value.where.startswith(where)
    if words:
        assert words in info.value.message


def test_unknown_template_syntax_names_the_file_line() -> None:
    body = b"---\nmodel: m\n---\nsystem:\nfine\n\nuser:\n{% for x in xs %}{{x}}{% endfor %}"
    with pytest.raises(TemplateError) as info:
        parse_prompt_file(body, "p.md")
    assert info.value.where == "p.md, line 8 col 1"


def test_bad_file_is_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1, "triage/2.md": "---\nmodel: [\n---\nx",
                                 "other/1.md": "---\nmodel: m\n---\nHello {{name}}"})
    items = list(connector(root).read_prompts())
    good = [i for i in items if isinstance(i, PromptItem)]
    bad = [i for i in items if isinstance(i, Problem)]
    assert sorted((i.name, i.external_version) for i in good) == [("other", "1"), ("triage", "1")]
    assert len(bad) == 1 and bad[0].where.startswith("prompts/triage/2.md:") and bad[0].prompt == "triage"


def test_write_back_creates_new_file_and_moves_labels(tmp_path: Path) -> None:
    root = make_store(tmp_path)
    files = connector(root)
    before = (root / "prompts/triage/1.md").read_bytes()
    result = files.write_version(prompt="triage", template=Template.chat(("user", "T: {{ticket}}")),
                                 model="local/smollm2-135m", params={"temperature": 0}, label="staging")
    assert result.created and result.external_version == "2"
    assert (root / "prompts/triage/1.md").read_bytes() == before  # never edited in place
    labels = {i.external_version: i.labels for i in files.read_prompts() if isinstance(i, PromptItem)}
    assert labels == {"1": ["production"], "2": ["staging"]}
    files.move_label(prompt="triage", external_version="2", label="production")
    labels = {i.external_version: i.labels for i in files.read_prompts() if isinstance(i, PromptItem)}
    assert labels == {"1": [], "2": ["production", "staging"]}
    assert not [p for p in (root / "prompts/triage").iterdir() if p.name.startswith(".")]


def test_write_back_of_an_existing_version_only_moves_the_label(tmp_path: Path) -> None:
    files = connector(make_store(tmp_path))
    parsed = parse_prompt_file(TRIAGE_V1.encode(), "x")
    result = files.write_version(prompt="triage", template=parsed.template, model=parsed.model,
                                 params=parsed.params, label="staging")
    assert not result.created and result.external_version == "1"


def test_write_back_never_overwrites_a_concurrently_created_version(tmp_path: Path) -> None:
    root = make_store(tmp_path)
    files = connector(root)
    # another writer created 2.md that does not parse; ours must land as 3.md
    (root / "prompts/triage/2.md").write_text("garbage", encoding="utf-8")
    result = files.write_version(prompt="triage", template=Template.plain("{{ticket}}"), model="m",
                                 params={}, label="staging")
    assert result.external_version == "3"
    assert (root / "prompts/triage/2.md").read_text() == "garbage"


def test_move_label_to_a_missing_version_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no version '9'"):
        connector(make_store(tmp_path)).move_label(prompt="triage", external_version="9", label="production")


def test_files_over_the_size_cap_are_problems_and_the_rest_synced(tmp_path: Path) -> None:
    """A prompt file or labels.yaml over MAX_FILE_BYTES is refused unread, naming its path."""
    padding = "x" * (MAX_FILE_BYTES + 1)
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1, "huge/1.md": f"---\nmodel: m\n---\n{padding}",
                                 "other/1.md": "---\nmodel: m\n---\nHello {{name}}",
                                 "other/labels.yaml": f"production: '1'\n# {padding}\n"})
    items = list(connector(root).read_prompts())
    good = sorted((i.name, i.external_version, tuple(i.labels)) for i in items if isinstance(i, PromptItem))
    bad = sorted((p.where, p.reason) for p in items if isinstance(p, Problem))
    assert good == [("other", "1", ()), ("triage", "1", ("production",))]
    assert bad == [("prompts/huge/1.md", "bad_prompt_file"), ("prompts/other/labels.yaml", "bad_labels_file")]
    assert all("larger than 1024 KB" in p.message for p in items if isinstance(p, Problem))


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden"])
def test_write_back_refuses_paths_outside_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="not allowed"):
        connector(make_store(tmp_path)).write_version(
            prompt=name, template=Template.plain("x"), model="m", params={}, label="staging")


def test_symlinks_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1.md").write_text(TRIAGE_V1, encoding="utf-8")
    root = make_store(tmp_path / "store")
    os.symlink(outside, root / "prompts" / "leak")
    os.symlink(outside / "1.md", root / "prompts" / "triage" / "2.md")
    files = connector(root)
    problems = [i for i in files.read_prompts() if isinstance(i, Problem)]
    assert {p.reason for p in problems} == {"outside_folder"}
    with pytest.raises(UserError, match="leaves the connector folder"):
        files.write_version(prompt="leak", template=Template.plain("x"), model="m", params={}, label="s")
    with pytest.raises(ConfigError, match="leaves the connector folder"):
        FilesConnector(name="local", options={"path": str(root), "prompts_dir": "../outside"})


def test_unknown_option_is_a_config_error_naming_the_connector() -> None:
    with pytest.raises(ConfigError) as info:
        FilesConnector(name="local", options={"path": ".", "folder": "x"})
    assert info.value.where == "[connectors.local]" and "folder" in info.value.message


def test_hidden_prompts_and_versions_are_reported_not_skipped_silently(tmp_path: Path) -> None:
    """`prompts/..name` and `prompts/x/.2.md` were dropped without a word; a hidden .md file or
    folder is now a problem saying why it is not synced. Other dot files (.DS_Store) stay quiet."""
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1, "triage/.2.md": TRIAGE_V1, "..name/1.md": TRIAGE_V1,
                                 ".draft.md": TRIAGE_V1})
    (root / "prompts" / ".DS_Store").write_bytes(b"\0")
    items = list(connector(root).read_prompts())
    assert [i.name for i in items if isinstance(i, PromptItem)] == ["triage"]
    problems = [p for p in items if isinstance(p, Problem)]
    assert sorted(p.where for p in problems) == ["prompts/..name", "prompts/.draft.md", "prompts/triage/.2.md"]
    assert all(p.reason == "hidden" and "starts with '.'" in p.message and p.hint for p in problems)
