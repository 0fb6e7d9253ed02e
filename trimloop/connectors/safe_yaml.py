"""The one YAML loader for everything a connector reads from a store (front matter, labels.yaml).

`yaml.safe_load` refuses Python objects but still expands aliases: ten lines of `&a [*b, *b, …]`
("billion laughs") grow into billions of nodes once something walks them, and the sync that reads
such a file runs out of memory. Store files have no use for aliases, so they are refused, as are
files over MAX_FILE_BYTES and nesting deeper than MAX_DEPTH; each refusal names the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionStartEvent

from trimloop.core.errors import UserError

MAX_FILE_BYTES = 1024 * 1024  # a prompt file or labels.yaml; real ones are a few KB
MAX_DEPTH = 100  # nested lists/mappings in one YAML document


class _StoreLoader(yaml.SafeLoader):
    """SafeLoader without aliases (`*name`, and so `<<: *name`) and with a nesting limit."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise ComposerError(None, None, "aliases (*name) are not allowed here", event.start_mark)
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def load(text: str, where: str, *, first_line: int = 1, what: str = "the file") -> Any:
    """Parse one YAML document; a bad one raises UserError naming `where:line`.

    `first_line` is the file line of the text's first line (front matter starts on line 2).
    """
    try:
        return yaml.load(text, Loader=_StoreLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + first_line if mark is not None else first_line
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = ("write the value out in full instead of an anchor (&name) and alias (*name)"
                if "alias" in problem else "check indentation and quote values that contain ':'")
        raise UserError(f"{what} is not valid YAML: {problem}", where=f"{where}:{line}", hint=hint) from None
    except ValueError as exc:  # a scalar the constructor cannot build, e.g. the date 2025-13-45
        raise UserError(f"{what} has a value that cannot be read: {exc}", where=f"{where}:{first_line}",
                        hint="quote the value to keep it as text") from None


def read_capped(path: Path, where: str) -> bytes:
    """A store file's bytes, refused past MAX_FILE_BYTES without reading it all."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"file is larger than {MAX_FILE_BYTES // 1024} KB, the limit for prompt and "
                        "labels files", where=where, hint="keep long examples in a dataset, not the prompt")
    return data
