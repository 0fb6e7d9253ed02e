"""Import a gold set (inputs and expected answers) from CSV or JSONL with a column mapping.

Rows with a problem (bad JSON, a missing column, an empty input) are reported with their line
number and skipped; the valid rows are kept. Duplicated inputs keep their first row.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from trimloop.core.errors import NotFound, UserError
from trimloop.core.tables import Dataset, Prompt, PromptVersion
from trimloop.evals.datasets import Row, _store, sample_and_split


@dataclass(frozen=True)
class ColumnMapping:
    """Template variable → column for inputs; columns for the expected and baseline outputs."""

    inputs: dict[str, str]
    expected: str | None = None
    baseline: str | None = None

    @classmethod
    def same_names(cls, *variables: str, expected: str | None = None) -> "ColumnMapping":
        return cls(inputs={v: v for v in variables}, expected=expected)


@dataclass
class RowProblem:
    line: int
    message: str


@dataclass
class ImportResult:
    dataset: Dataset | None
    rows: int
    problems: list[RowProblem] = field(default_factory=list)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


NUL_MESSAGE = "contains a NUL character, which no database column can hold"
MAX_ROW_DEPTH = 64  # nested lists/objects in one JSONL row


def _unstorable(record: dict[str, Any]) -> str | None:
    """Why a parsed JSONL row cannot be stored: a lone surrogate escape ("\\ud800" is not text and
    cannot be encoded), a non-finite number, or nesting past MAX_ROW_DEPTH."""
    def depth(value: Any, level: int) -> int:
        if level > MAX_ROW_DEPTH:
            return level
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return max((depth(v, level + 1) for v in items), default=level)

    if depth(record, 0) > MAX_ROW_DEPTH:
        return f"nested more than {MAX_ROW_DEPTH} levels deep (keep rows a few levels deep)"
    try:
        json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end].encode("utf-8", "backslashreplace").decode()
        return f"contains {bad}, half of a surrogate pair, which is not text (write the character itself)"
    except ValueError:
        return "contains a number that is not finite (Infinity or NaN)"
    return None


def _text(path: Path, shown: str) -> str:
    """The file as text (a leading byte-order mark dropped); an error names the first non-UTF-8 byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError(f"not UTF-8: byte 0x{data[exc.start]:02x} on line {line}, column {col}",
                        where=f"{shown}:{line}", hint="save the file as UTF-8") from None


def read_rows(path: Path, mapping: ColumnMapping, *, shown: str | None = None) -> tuple[list[Row], list[RowProblem]]:
    """Rows from a .csv/.tsv or .jsonl file, and the problems of the rows left out.

    `shown` is the name errors give the file (an upload's name rather than its temp path)."""
    shown = shown or str(path)
    if not path.exists():
        raise NotFound(f"no such file {path}", where="gold set import", hint="check the path")
    suffix = path.suffix.lower()
    records: list[tuple[int, dict[str, Any] | None, str | None]] = []
    with io.StringIO(_text(path, shown), newline="") as handle:
        if suffix in (".csv", ".tsv"):
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            line = 1
            for record in reader:
                records.append((line + 1, dict(record), None))
                line = reader.line_num
        elif suffix in (".jsonl", ".ndjson"):
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                if "\x00" in text or "\\u0000" in text:
                    records.append((number, None, NUL_MESSAGE))
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    records.append((number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"))
                    continue
                except RecursionError:
                    records.append((number, None, "nested too deeply to read (keep rows a few levels deep)"))
                    continue
                if not isinstance(value, dict):
                    records.append((number, None, f"expected a JSON object, got {type(value).__name__}"))
                else:
                    records.append((number, value, _unstorable(value)))
        else:
            raise UserError(f"unsupported file type {suffix or '(none)'}", where=shown,
                            hint="give a .csv, .tsv or .jsonl file")
    rows: list[Row] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    wanted = [*mapping.inputs.values(), *(c for c in (mapping.expected, mapping.baseline) if c)]
    for line, record, error in records:
        if record is None or error:
            problems.append(RowProblem(line, error or "unreadable row"))
            continue
        missing = [c for c in wanted if record.get(c) is None or (c in mapping.inputs.values() and record[c] == "")]
        if missing:
            problems.append(RowProblem(line, f"missing or empty column(s): {', '.join(missing)}"))
            continue
        if any(isinstance(record[c], str) and "\x00" in record[c] for c in wanted):
            problems.append(RowProblem(line, NUL_MESSAGE))
            continue
        row = Row(inputs={var: record[column] for var, column in mapping.inputs.items()},
                  expected=_as_text(record.get(mapping.expected)) if mapping.expected else None,
                  baseline_output=_as_text(record.get(mapping.baseline)) if mapping.baseline else None)
        if row.key in seen:
            problems.append(RowProblem(line, f"duplicate inputs of line {seen[row.key]}: skipped"))
            continue
        seen[row.key] = line
        rows.append(row)
    return rows, problems


def import_file(
    session: Session,
    *,
    prompt_id: int,
    path: str | Path,
    mapping: ColumnMapping,
    version_id: int | None = None,
    size: int | None = None,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    name: str | None = None,
    shown: str | None = None,
) -> ImportResult:
    """Import a gold set as a dataset of the prompt; an identical import reuses the dataset.

    `shown` is the file's name in errors (an upload's name rather than the temp file's path)."""
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="gold set import",
                       hint="sync or create the prompt first")
    if not 0 <= seed <= 2**32 - 1:
        raise UserError(f"seed must be from 0 to 2**32 - 1, not {seed}", where="gold set import: seed")
    version = None
    if version_id is not None:
        version = session.get(PromptVersion, version_id)
        if version is None or version.prompt_id != prompt_id:
            raise NotFound(f"prompt {prompt.name!r} (id {prompt_id}) has no version with id {version_id}",
                           where="gold set import: version_id",
                           hint=f"list its versions: GET /prompts/{prompt_id}, or leave version_id out")
    path = Path(path)
    shown = shown or str(path)
    rows, problems = read_rows(path, mapping, shown=shown)
    if not rows:
        first = f"; line {problems[0].line}: {problems[0].message}" if problems else ""
        raise UserError(f"no valid rows in {Path(shown).name}{first}", where=shown,
                        hint=f"check the column mapping {mapping.inputs} against the file's header")
    chosen = sample_and_split(rows, size=size, holdout_fraction=holdout_fraction, seed=seed)
    config = {"file": Path(shown).name, "mapping": {"inputs": mapping.inputs, "expected": mapping.expected,
                                             "baseline": mapping.baseline},
              "size": size, "holdout_fraction": holdout_fraction, "skipped_rows": len(problems)}
    dataset = _store(session, prompt_id=prompt_id, version=version, source="import", seed=seed,
                     chosen=chosen, config=config, name=name or f"{prompt.name}: {Path(shown).name}")
    return ImportResult(dataset=dataset, rows=len(chosen), problems=problems)
