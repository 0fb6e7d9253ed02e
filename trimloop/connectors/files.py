"""The files connector: a folder of prompt files and JSONL logs (what `trimloop demo` uses).

    <path>/prompts/<name>/<version>.md   one file per version (or <path>/prompts/<name>.md = "1")
    <path>/prompts/<name>/labels.yaml    label → version; once it exists it overrides front matter
    <path>/logs/**/*.jsonl               one call per line, appended to; read from a byte cursor

Write-back never edits a file in place: a new version is written to a temp file and linked into
place (so it cannot overwrite), and labels.yaml is replaced by an atomic rename. Paths that leave
the folder (`..`, symlinks) are refused.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from trimloop.connectors.base import Checkpoint, Connector, LogItem, Problem, PromptItem, WriteResult
from trimloop.connectors import safe_yaml
from trimloop.connectors.files_format import PromptFile, decode, parse_prompt_file, render_prompt_file
from trimloop.connectors.files_logs import classify, describe, parse_line
from trimloop.core.errors import ConfigError, NotFound, UserError
from trimloop.core.identity import version_identity
from trimloop.core.templates import Template

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
LABELS_FILE = "labels.yaml"
CHECKPOINT_EVERY = 1000


class FilesConnector(Connector):
    """Prompts and logs in a local folder."""

    type = "files"

    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        path: Path
        prompts_dir: str = "prompts"
        logs_dir: str = "logs"

    def __init__(self, *, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, options=options)
        self.root = self.options.path.expanduser().resolve()
        self.prompts_root = self._inside(self.root / self.options.prompts_dir, "prompts_dir")
        self.logs_root = self._inside(self.root / self.options.logs_dir, "logs_dir")

    # -- reading ---------------------------------------------------------------------------
    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        if not self.root.is_dir():
            raise ConfigError(f"folder {self.root} does not exist", where=f"[connectors.{self.name}] path",
                              hint="create it (trimloop demo does) or fix the path")
        if not self.prompts_root.is_dir():
            return
        entries = [p for p in self.prompts_root.iterdir() if p.is_dir() or p.suffix == ".md"]
        for path in sorted(entries):
            if path.name.startswith("."):
                yield _hidden(self._rel(path))
        names = sorted({p.stem if p.suffix == ".md" else p.name for p in entries if not p.name.startswith(".")})
        for name in names:
            yield from self._read_prompt(name)

    def _read_prompt(self, name: str) -> Iterator[PromptItem | Problem]:
        where = self._rel(self.prompts_root / name)
        if not NAME.match(name):
            yield Problem(where, f"prompt name {name!r} is not allowed", "bad_name",
                          "use letters, digits, '.', '_' and '-'", prompt=name)
            return
        if (self.prompts_root / name).is_dir():
            for hidden in sorted((self.prompts_root / name).glob(".*.md")):
                yield _hidden(self._rel(hidden))
        versions: dict[str, PromptFile] = {}
        front_labels: dict[str, str] = {}
        for version, path in self._version_files(name):
            rel = self._rel(path)
            if not self._is_safe(path):
                yield Problem(rel, "file leaves the connector folder (symlink or '..')", "outside_folder",
                              "copy the file into the folder instead of linking it", prompt=name)
                continue
            try:
                parsed = parse_prompt_file(safe_yaml.read_capped(path, rel), rel)
            except (UserError, OSError) as exc:
                yield Problem(getattr(exc, "where", None) or rel, getattr(exc, "message", str(exc)),
                              "bad_prompt_file", getattr(exc, "hint", None), prompt=name)
                continue
            versions[version] = parsed
            for label in parsed.labels:
                if front_labels.setdefault(label, version) != version:
                    yield Problem(rel, f"label {label!r} is on versions {front_labels[label]} and "
                                  f"{version}; using {version}", "label_conflict",
                                  "keep each label in one file's front matter", prompt=name)
                    front_labels[label] = version
        labels = front_labels
        try:
            stored = self._labels_file(name)
        except UserError as exc:
            yield Problem(exc.where or where, exc.message, "bad_labels_file", exc.hint, prompt=name)
            stored = None
        if stored is not None:
            labels = stored
            for label, version in stored.items():
                if version not in versions:
                    yield Problem(self._rel(self.prompts_root / name / LABELS_FILE),
                                  f"label {label!r} points to missing version {version!r}",
                                  "bad_labels_file", prompt=name)
        for version, parsed in versions.items():
            yield PromptItem(
                name=name, template=parsed.template, model=parsed.model, params=parsed.params,
                external_version=version, external_id=name, description=parsed.description,
                labels=sorted(label for label, v in labels.items() if v == version),
                where=self._rel(self._version_path(name, version)),
            )

    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint]:
        state: dict[str, list[int]] = json.loads(cursor)["files"] if cursor else {}
        if self.logs_root.is_dir():
            for path in self._log_files():
                if isinstance(path, Problem):
                    yield path
                    continue
                rel = self._rel(path)
                if not self._is_safe(path):
                    yield Problem(rel, "log file leaves the connector folder (symlink or '..')",
                                  "outside_folder", "copy the file into the folder")
                    continue
                yield from self._read_log_file(path, rel, state)
        yield Checkpoint(json.dumps({"files": state}, sort_keys=True))

    def _log_files(self) -> list[Path | Problem]:
        """Every *.jsonl under logs/ in path order, and a problem for each symlinked folder (links
        are not followed: one could lead out of the connector folder, or loop)."""
        found: list[Path | Problem] = []
        for folder, dirs, files in os.walk(self.logs_root):
            here = Path(folder)
            links = sorted(d for d in dirs if (here / d).is_symlink())
            for name in links:
                found.append(Problem(self._rel(here / name), "log folder is a symlink; links are not followed",
                                     "outside_folder", "move or copy the log files into the logs folder"))
            dirs[:] = [d for d in dirs if d not in links]
            found.extend(here / name for name in files if name.endswith(".jsonl"))
        return sorted(found, key=lambda p: p.where if isinstance(p, Problem) else self._rel(p))

    def _read_log_file(self, path: Path, rel: str,
                       state: dict[str, list[int]]) -> Iterator[LogItem | Problem | Checkpoint]:
        offset, lineno = state.get(rel, [0, 0])
        if path.stat().st_size < offset:  # truncated or replaced: read it again from the start
            offset, lineno = 0, 0
        with path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n") and _incomplete(raw):
                    break  # a line still being written; the next sync reads it whole
                lineno += 1
                offset += len(raw)
                if raw.strip():
                    yield _parse(raw, f"{rel}:{lineno}")
                if lineno % CHECKPOINT_EVERY == 0:
                    state[rel] = [offset, lineno]
                    yield Checkpoint(json.dumps({"files": state}, sort_keys=True))
        state[rel] = [offset, lineno]

    # -- writing ---------------------------------------------------------------------------
    def write_version(self, *, prompt: str, template: Template, model: str, params: dict[str, Any],
                      label: str, description: str | None = None) -> WriteResult:
        folder = self._prompt_folder(prompt)
        sha = version_identity(template=template.dump(), model=model, params=params)
        existing = {}
        for version, path in self._version_files(prompt):
            try:
                parsed = parse_prompt_file(safe_yaml.read_capped(path, self._rel(path)), self._rel(path))
            except UserError:
                continue
            existing[version] = version_identity(template=parsed.template.dump(), model=parsed.model,
                                                 params=parsed.params)
        same = [v for v, s in existing.items() if s == sha]
        if same:
            self.move_label(prompt=prompt, external_version=same[0], label=label)
            return WriteResult(prompt, same[0], label, created=False, external_id=prompt,
                               where=self._rel(self._version_path(prompt, same[0])))
        text = render_prompt_file(template, model, params, description)
        check = parse_prompt_file(text.encode("utf-8"), "new version")
        if version_identity(template=check.template.dump(), model=check.model, params=check.params) != sha:
            raise UserError("this version cannot be written as a prompt file without changing it",
                            where=f"prompt {prompt!r}", hint="a message contains a line that looks "
                            "like a role marker ('user:') or has surrounding blank lines")
        folder.mkdir(parents=True, exist_ok=True)
        number = max([int(v) for v in existing if v.isdigit()] + [0]) + 1
        version = _create_exclusive(folder, number, text)
        self.move_label(prompt=prompt, external_version=version, label=label)
        return WriteResult(prompt, version, label, created=True, external_id=prompt,
                           where=self._rel(folder / f"{version}.md"))

    def move_label(self, *, prompt: str, external_version: str, label: str) -> None:
        folder = self._prompt_folder(prompt)
        versions = dict(self._version_files(prompt))
        if external_version not in versions:
            raise NotFound(f"prompt {prompt!r} has no version {external_version!r}",
                           where=self._rel(folder), hint=f"versions: {', '.join(versions) or 'none'}")
        labels = self._labels_file(prompt)
        if labels is None:  # first write: carry over the labels from front matter
            labels = {}
            for version, path in versions.items():
                try:
                    rel = self._rel(path)
                    for name in parse_prompt_file(safe_yaml.read_capped(path, rel), rel).labels:
                        labels[name] = version
                except UserError:
                    continue
        labels[label] = external_version
        folder.mkdir(parents=True, exist_ok=True)
        body = "# label: version. Written by trimloop; it overrides labels in front matter.\n"
        body += yaml.safe_dump({k: str(v) for k, v in sorted(labels.items())}, default_style=None)
        _replace_atomically(folder / LABELS_FILE, body)

    # -- paths -----------------------------------------------------------------------------
    def _version_files(self, name: str) -> list[tuple[str, Path]]:
        found: dict[str, Path] = {}
        flat = self.prompts_root / f"{name}.md"
        if flat.is_file():
            found["1"] = flat
        folder = self.prompts_root / name
        if folder.is_dir():
            for path in folder.glob("*.md"):
                if not path.name.startswith("."):
                    found[path.stem] = path
        return sorted(found.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))

    def _version_path(self, name: str, version: str) -> Path:
        return dict(self._version_files(name)).get(version, self.prompts_root / name / f"{version}.md")

    def _labels_file(self, name: str) -> dict[str, str] | None:
        path = self.prompts_root / name / LABELS_FILE
        if not path.is_file():
            return None
        rel = self._rel(path)
        if not self._is_safe(path):
            raise UserError("labels file leaves the connector folder", where=rel)
        data = safe_yaml.load(decode(safe_yaml.read_capped(path, rel), rel), rel, what="labels file") or {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise UserError("labels file must map label names to versions", where=rel,
                            hint="write lines like production: \"2\"")
        return {k: str(v) for k, v in data.items()}

    def _prompt_folder(self, prompt: str) -> Path:
        if not NAME.match(prompt) or ".." in prompt:
            raise UserError(f"prompt name {prompt!r} is not allowed", where=f"[connectors.{self.name}]",
                            hint="use letters, digits, '.', '_' and '-'")
        folder = self.prompts_root / prompt
        if folder.exists() and not self._is_safe(folder):
            raise UserError(f"{self._rel(folder)} leaves the connector folder (symlink)",
                            where=f"[connectors.{self.name}]", hint="replace the link with a folder")
        return folder

    def _inside(self, path: Path, option: str) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ConfigError(f"{option} leaves the connector folder", where=f"[connectors.{self.name}]",
                              hint="use a folder name inside path")
        return resolved

    def _is_safe(self, path: Path) -> bool:
        return not path.is_symlink() and path.resolve().is_relative_to(self.root)

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def _hidden(where: str) -> Problem:
    return Problem(where, "hidden (its name starts with '.'), so it is not synced", "hidden",
                   "rename it without the leading '.' to sync it, or move it out of the prompts folder",
                   stream="prompts")


def _parse(raw: bytes, where: str) -> LogItem | Problem:
    try:
        return parse_line(raw, where)
    except ValidationError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Problem(where, f"not UTF-8: byte 0x{raw[bad.start]:02x} at column {bad.start + 1}",
                           "not_utf8", "write log files as UTF-8")
        reason = classify(exc)
        hint = "one JSON object per line" if reason == "invalid_json" else \
            "see docs/connectors.md for the log line shapes"
        return Problem(where, describe(exc), reason, hint)
    except ValueError as exc:
        return Problem(where, str(exc), "missing_field", "see docs/connectors.md for the log line shapes")
    except OverflowError as exc:  # a number no datetime or integer can hold
        return Problem(where, f"a number is out of range: {exc}", "out_of_range",
                       "see docs/connectors.md for the log line shapes")


def _incomplete(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return False
    except ValueError:
        return True


def _create_exclusive(folder: Path, number: int, text: str) -> str:
    """Write `<number>.md` (or the next free number) without ever overwriting a file."""
    fd, tmp = tempfile.mkstemp(prefix=".new-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        while True:
            try:
                os.link(tmp, folder / f"{number}.md")
                return str(number)
            except FileExistsError:
                number += 1
    finally:
        os.unlink(tmp)


def _replace_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
