"""`{{var}}` templates for chat messages and plain text.

A template is JSON: `{"kind": "chat", "messages": [{"role": ..., "content": ...}]}` or
`{"kind": "text", "text": ...}`. Rendering substitutes values in one pass, so text inside a value
(`{{7*7}}`, `<script>`) stays literal. A missing or unused variable is an error naming it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from trimloop.core.errors import MissingVariable, TemplateError, UnusedVariable

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_OPEN = re.compile(r"\{\{|\{%|\{#")
ROLES = ("system", "user", "assistant")


class ChatMessage(BaseModel):
    model_config = {"extra": "forbid"}
    role: Literal["system", "user", "assistant"]
    content: str


class Template(BaseModel):
    model_config = {"extra": "forbid"}

    kind: Literal["chat", "text"]
    messages: list[ChatMessage] | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _one_body(self) -> "Template":
        if self.kind == "chat" and not self.messages:
            raise ValueError("a chat template needs a non-empty 'messages' list")
        if self.kind == "text" and self.text is None:
            raise ValueError("a text template needs 'text'")
        if self.kind == "chat" and self.text is not None:
            raise ValueError("a chat template has 'messages', not 'text'")
        if self.kind == "text" and self.messages is not None:
            raise ValueError("a text template has 'text', not 'messages'")
        return self

    @classmethod
    def chat(cls, *pairs: tuple[str, str]) -> "Template":
        return cls(kind="chat", messages=[ChatMessage(role=r, content=c) for r, c in pairs])

    @classmethod
    def plain(cls, text: str) -> "Template":
        return cls(kind="text", text=text)

    def parts(self) -> list[str]:
        return [m.content for m in self.messages] if self.kind == "chat" else [self.text or ""]

    def variables(self) -> list[str]:
        """Placeholder names in order of first appearance; checks the syntax on the way."""
        seen: dict[str, None] = {}
        for index, part in enumerate(self.parts()):
            check_syntax(part, where=self._where(index))
            for match in PLACEHOLDER.finditer(part):
                seen.setdefault(match.group(1))
        return list(seen)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def _where(self, index: int) -> str:
        if self.kind == "chat" and self.messages:
            return f"messages[{index}] ({self.messages[index].role})"
        return "text"


def check_syntax(text: str, *, where: str = "template") -> None:
    """Refuse template syntax trimloop does not understand (`{% %}`, `{{ a.b }}`, unclosed)."""
    valid = {m.start() for m in PLACEHOLDER.finditer(text)}
    for match in _OPEN.finditer(text):
        if match.start() in valid:
            continue
        line = text.count("\n", 0, match.start()) + 1
        col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        snippet = text[match.start() : match.start() + 24].split("\n")[0]
        raise TemplateError(
            f"unsupported template syntax {snippet!r}",
            where=f"{where}, line {line} col {col}",
            hint="trimloop templates only use {{name}} placeholders (letters, digits, _); "
            "render loops and filters before importing",
        )


def render(template: Template, variables: dict[str, Any]) -> list[dict[str, str]] | str:
    """Chat messages (list of dicts) or text, with every placeholder filled."""
    needed = template.variables()
    missing = [name for name in needed if name not in variables]
    if missing:
        raise MissingVariable(
            f"missing variable(s) {', '.join(missing)}",
            where="template",
            hint=f"the template uses {', '.join(needed) or 'no variables'}; pass every one",
        )
    unused = [name for name in variables if name not in needed]
    if unused:
        raise UnusedVariable(
            f"unused variable(s) {', '.join(sorted(unused))}",
            where="template",
            hint=f"the template only uses {', '.join(needed) or 'no variables'}; "
            "drop the others or add their placeholders",
        )

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: _as_text(variables[m.group(1)]), text)

    if template.kind == "chat":
        return [{"role": m.role, "content": fill(m.content)} for m in template.messages or []]
    return fill(template.text or "")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)
