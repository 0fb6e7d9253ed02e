"""The files connector's formats: prompt files (YAML front matter + `{{var}}` body) and JSONL logs.

Prompt file (`prompts/<name>/<version>.md`):

    ---
    model: gpt-4o-mini
    params: {temperature: 0, max_tokens: 64}
    labels: [production]
    ---
    system:
    You sort support tickets.

    user:
    Ticket: {{ticket}}

A body that starts with a `system:`, `user:` or `assistant:` line is a chat template, split at
those lines; any other body is a text template (`kind: text` forces it). docs/connectors.md has
the full description, including both JSONL log shapes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from trimloop.connectors import safe_yaml
from trimloop.core.errors import UserError
from trimloop.core.templates import ROLES, ChatMessage, Template, check_syntax

ROLE_LINE = re.compile(r"^(system|user|assistant):[ \t]*$")
FRONT_KEYS = {"model", "params", "labels", "description", "kind"}


class PromptFile:
    """A parsed prompt file: its template, model, params, labels and description."""

    def __init__(self, template: Template, model: str, params: dict[str, Any], labels: list[str],
                 description: str | None) -> None:
        self.template, self.model, self.params = template, model, params
        self.labels, self.description = labels, description


def decode(data: bytes, where: str) -> str:
    """UTF-8 text, or an error naming the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError(
            f"not UTF-8: byte 0x{data[exc.start]:02x} at column {col}",
            where=f"{where}:{line}", hint="save the file as UTF-8",
        ) from None


def parse_prompt_file(data: bytes, where: str) -> PromptFile:
    """Parse one prompt file; every error names `where:line`."""
    text = decode(data, where).replace("\r\n", "\n")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise UserError("a prompt file starts with YAML front matter between '---' lines",
                        where=f"{where}:1", hint="begin the file with ---, model: ..., ---")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise UserError("front matter is not closed", where=f"{where}:1",
                        hint="add a line with only --- after the model and params") from None
    front = _front_matter("\n".join(lines[1:end]), where)
    body_start = end + 2  # 1-based line number of the first body line
    model = front.get("model")
    if not isinstance(model, str) or not model.strip():
        raise UserError("front matter needs 'model' (a model id string)", where=f"{where}:2",
                        hint="add e.g. model: gpt-4o-mini")
    params = front.get("params", {}) or {}
    if not isinstance(params, dict):
        raise UserError("'params' must be a mapping", where=_key_line(lines, end, "params", where),
                        hint="write params: {temperature: 0, max_tokens: 64}")
    labels = front.get("labels", []) or []
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise UserError("'labels' must be a list of names", where=_key_line(lines, end, "labels", where),
                        hint="write labels: [production]")
    description = front.get("description")
    kind = front.get("kind")
    if kind not in (None, "chat", "text"):
        raise UserError(f"'kind' must be chat or text, not {kind!r}",
                        where=_key_line(lines, end, "kind", where))
    body = lines[end + 1 :]
    template = _template(body, body_start, kind, where)
    return PromptFile(template, model.strip(), params, list(dict.fromkeys(labels)),
                      str(description) if description is not None else None)


def _front_matter(text: str, where: str) -> dict[str, Any]:
    front = safe_yaml.load(text, where, first_line=2, what="front matter") if text.strip() else {}
    if not isinstance(front, dict):
        raise UserError("front matter must be a mapping of keys (model, params, labels)",
                        where=f"{where}:2")
    unknown = sorted(set(map(str, front)) - FRONT_KEYS)
    if unknown:
        raise UserError(f"unknown front matter key(s): {', '.join(unknown)}", where=f"{where}:2",
                        hint=f"allowed: {', '.join(sorted(FRONT_KEYS))}")
    return front


def _key_line(lines: list[str], end: int, key: str, where: str) -> str:
    for i in range(1, end):
        if lines[i].startswith(f"{key}:"):
            return f"{where}:{i + 1}"
    return f"{where}:2"


def _template(body: list[str], first_line: int, kind: str | None, where: str) -> Template:
    first = next((i for i, line in enumerate(body) if line.strip()), None)
    if first is None:
        raise UserError("the prompt body is empty", where=f"{where}:{first_line}",
                        hint="write the template text below the front matter")
    is_chat = kind == "chat" or (kind is None and ROLE_LINE.match(body[first]) is not None)
    if not is_chat:
        content, start = _trim(body)
        _check(content, first_line + start, where)
        return Template.plain(content)
    messages, role, start, chunk = [], None, 0, []
    for i, line in enumerate(body + ["user:"]):  # sentinel closes the last section
        match = ROLE_LINE.match(line)
        if match is None:
            if role is None and line.strip():
                raise UserError("text before the first role line in a chat prompt",
                                where=f"{where}:{first_line + i}",
                                hint=f"start each message with a line {', '.join(r + ':' for r in ROLES)}")
            chunk.append(line)
            continue
        if role is not None:
            content, offset = _trim(chunk)
            if not content:
                raise UserError(f"empty {role} message", where=f"{where}:{first_line + start}",
                                hint="write the message text below its role line or remove it")
            _check(content, first_line + start + 1 + offset, where)
            messages.append(ChatMessage(role=role, content=content))
        role, start, chunk = match.group(1), i, []
    return Template(kind="chat", messages=messages)


def _trim(lines: list[str]) -> tuple[str, int]:
    """Text without its leading and trailing blank lines, and how many leading lines were cut."""
    lo, hi = 0, len(lines)
    while lo < hi and not lines[lo].strip():
        lo += 1
    while hi > lo and not lines[hi - 1].strip():
        hi -= 1
    return "\n".join(lines[lo:hi]), lo


def _check(content: str, line: int, where: str) -> None:
    """Refuse unknown template syntax; padding with newlines makes the error's line absolute."""
    check_syntax("\n" * (line - 1) + content, where=where)


def render_prompt_file(template: Template, model: str, params: dict[str, Any],
                       description: str | None = None) -> str:
    """The text of a prompt file for this version (labels live in labels.yaml, not here)."""
    front: dict[str, Any] = {"model": model, "kind": template.kind}
    if params:
        front["params"] = params
    if description:
        front["description"] = description
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if template.kind == "text":
        body = template.text or ""
    else:
        body = "\n\n".join(f"{m.role}:\n{m.content}" for m in template.messages or [])
    return f"---\n{head}---\n{body}\n"
