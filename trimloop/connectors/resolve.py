"""Link a LogItem to its Prompt and PromptVersion in the store, and recover input variables.

When a source logs only what was sent (rendered messages), the variables are recovered by
matching the text against the known templates: `{{ticket}}` becomes a capture group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from trimloop.connectors.base import LogItem, Problem, PromptItem
from trimloop.core.identity import version_identity
from trimloop.core.tables import Prompt, PromptVersion
from trimloop.core.templates import PLACEHOLDER


@dataclass
class _Version:
    id: int
    prompt_id: int
    template: dict[str, Any]
    _patterns: list[tuple[str | None, re.Pattern[str]]] | None = None

    def patterns(self) -> list[tuple[str | None, re.Pattern[str]]]:
        if self._patterns is None:
            if self.template.get("kind") == "chat":
                parts = [(m["role"], m["content"]) for m in self.template.get("messages", [])]
            else:
                parts = [(None, self.template.get("text", ""))]
            self._patterns = [(role, _compile(text)) for role, text in parts]
        return self._patterns

    def extract(self, rendered: list[dict[str, Any]] | str) -> dict[str, Any] | None:
        """The variables that turn this template into `rendered`, or None if it does not fit."""
        if isinstance(rendered, str):
            texts = [(None, rendered)]
        else:
            texts = [(m.get("role"), m.get("content")) for m in rendered]
        patterns = self.patterns()
        if len(texts) != len(patterns):
            return None
        found: dict[str, Any] = {}
        for (role, text), (want_role, pattern) in zip(texts, patterns):
            if want_role is not None and role != want_role or not isinstance(text, str):
                return None
            match = pattern.fullmatch(text)
            if match is None:
                return None
            for name, value in _named(match).items():
                if found.setdefault(name, value) != value:
                    return None
        return found


def _compile(text: str) -> re.Pattern[str]:
    out, seen, last = [], set(), 0
    for match in PLACEHOLDER.finditer(text):
        out.append(re.escape(text[last : match.start()]))
        name = match.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        last = match.end()
    out.append(re.escape(text[last:]))
    return re.compile("".join(out), re.DOTALL)


def _named(match: re.Match[str]) -> dict[str, str]:
    return {k: v for k, v in match.groupdict().items() if v is not None}


@dataclass
class Resolver:
    """Lookup tables loaded once per sync, so a million log lines cost dictionary hits."""

    prompts: dict[str, int] = field(default_factory=dict)
    by_external: dict[tuple[int, str], _Version] = field(default_factory=dict)
    by_sha: dict[str, _Version] = field(default_factory=dict)
    by_prompt: dict[int, list[_Version]] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection) -> "Resolver":
        self = cls()
        for pid, name in conn.execute(select(Prompt.id, Prompt.name)):
            self.prompts[name] = pid
        rows = conn.execute(
            select(
                PromptVersion.id,
                PromptVersion.prompt_id,
                PromptVersion.sha,
                PromptVersion.external_version,
                PromptVersion.template,
            ).order_by(PromptVersion.id.desc())
        )
        for vid, pid, sha, ext, template in rows:
            version = _Version(vid, pid, template)
            self.by_sha[sha] = version
            if ext is not None:
                self.by_external.setdefault((pid, ext), version)
            self.by_prompt.setdefault(pid, []).append(version)
        return self

    def extend(self, items: list[PromptItem]) -> None:
        """Also know versions read from a store but not synced yet (a dry run: `trimloop doctor`);
        what they add gets negative ids, so it can never be mistaken for a stored row."""
        fresh = -1 - len(self.by_sha) - len(self.prompts)
        for item in items:
            template = item.template.dump()
            sha = version_identity(template=template, model=item.model, params=item.params)
            if item.name not in self.prompts:
                self.prompts[item.name], fresh = fresh, fresh - 1
            pid = self.prompts[item.name]
            version = self.by_sha.get(sha)
            if version is None or version.prompt_id != pid:
                version, fresh = _Version(fresh, pid, template), fresh - 1
                self.by_sha.setdefault(sha, version)
                self.by_prompt.setdefault(pid, []).append(version)
            self.by_external.setdefault((pid, item.external_version), version)

    def resolve(self, item: LogItem) -> tuple[int, int | None, dict[str, Any]] | Problem:
        """(prompt_id, version_id, inputs) for the item, or the Problem that stops it."""
        where = item.where or f"record {item.external_id}"
        version: _Version | None = None
        if item.version_sha:
            version = self.by_sha.get(item.version_sha)
            if version is None:
                return Problem(where, f"unknown prompt version sha {item.version_sha[:12]}…",
                               "unknown_version", "sync the connector that holds the prompt first")
        elif item.prompt is not None:
            prompt_id = self.prompts.get(item.prompt)
            if prompt_id is None:
                return Problem(where, f"log refers to unknown prompt {item.prompt!r}", "unknown_prompt",
                               f"known prompts: {_few(self.prompts)}; fix the name or sync the "
                               "connector that holds the prompt, then run `trimloop sync --full`")
            if item.version is not None:
                version = self.by_external.get((prompt_id, str(item.version)))
                if version is None:
                    return Problem(where, f"prompt {item.prompt!r} has no version {item.version!r}",
                                   "unknown_version", "sync prompts first or fix the version")
            elif item.inputs is None and item.rendered is not None:
                version = self._match(item.rendered, self.by_prompt.get(prompt_id, []))
            if version is None:
                return self._finish(item, prompt_id, None, where)
        elif item.rendered is not None:
            version = self._match(item.rendered, [v for vs in self.by_prompt.values() for v in vs])
            if version is None:
                return Problem(where, "cannot tell which prompt produced this call", "no_prompt",
                               "add \"prompt\" (and \"version\") to the record, or sync the prompt "
                               "store whose template produced these messages")
        else:
            return Problem(where, "record names no prompt", "missing_field",
                           "add \"prompt\": \"<prompt name>\" to the record")
        return self._finish(item, version.prompt_id, version, where)

    def _finish(self, item: LogItem, prompt_id: int, version: _Version | None,
                where: str) -> tuple[int, int | None, dict[str, Any]] | Problem:
        inputs = None  # what was sent, matched against the template, beats a source's guess
        if version is not None and item.rendered is not None:
            inputs = version.extract(item.rendered)
        if inputs is None:
            inputs = item.inputs
        if inputs is None:
            return Problem(where, "cannot recover the input variables of this call", "no_inputs",
                           "log \"inputs\": {...} beside the messages, or name the prompt version "
                           "whose template produced them")
        return prompt_id, (version.id if version else None), inputs

    @staticmethod
    def _match(rendered: list[dict[str, Any]] | str, versions: list[_Version]) -> _Version | None:
        for version in versions:
            if version.extract(rendered) is not None:
                return version
        return None


def _few(names: dict[str, int]) -> str:
    listed = sorted(names)[:8]
    return ", ".join(listed) + (" …" if len(names) > 8 else "") if listed else "none (store is empty)"
