"""Datasets: frozen items for one prompt, built from its logs or imported from a gold set.

From logs: one version (default: the one labelled `production`), deduplicated by inputs,
stratified (by output label when the outputs look like labels, else by input length), capped, and
split with a seed into a **search** part and a **holdout** part that search never sees. The same
logs and seed give the same content hash, and an existing dataset with that hash is reused.
Import: CSV or JSONL with a column mapping; bad rows are reported by line and the rest kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from trimloop.core.errors import NotFound, UserError
from trimloop.core.identity import canonical_json, sha256_of
from trimloop.core.store import PRODUCTION, production_version_id
from trimloop.core.tables import Dataset, DatasetItem, LogRecord, Prompt, PromptVersion

MAX_LABEL_CLASSES = 20


@dataclass
class Row:
    """One candidate item before it is frozen."""

    inputs: dict[str, Any]
    expected: str | None = None
    baseline_output: str | None = None
    feedback: list[dict[str, Any]] = field(default_factory=list)
    log_id: int | None = None

    @cached_property
    def key(self) -> str:  # sorted by, grouped by, compared: hashed once (inputs are not changed after)
        return sha256_of(self.inputs)


def looks_like_labels(outputs: Sequence[str | None]) -> bool:
    """True when outputs are few short classes ("positive", "Billing Disputes"), not free text."""
    present = [" ".join(o.split()).casefold() for o in outputs if o and o.strip()]
    if len(present) < 4:
        return False
    distinct = set(present)
    return (len(distinct) <= MAX_LABEL_CLASSES and len(distinct) <= len(present) / 2
            and all(len(o.split()) <= 4 for o in distinct))


# What `default_evaluators` can pick: the evaluators of a run that configures none.
DEFAULT_EVALUATOR_KEYS = ("matches_baseline", "label", "exact")


def default_evaluators(rows: Sequence[Any] = ()) -> Any:
    """The evaluators of a prompt that configures none: `label` against gold answers when there are
    any, `exact` for free-text gold answers, else agreement with the baseline's outputs (given as
    labels when they look like classes). `rows` have `expected` and `baseline_output`."""
    expected = [r.expected for r in rows if r.expected is not None]
    if expected:
        if looks_like_labels(expected):
            return {"label": {"labels": _labels(expected)}}
        return ["exact"]
    outputs = [r.baseline_output for r in rows]
    if looks_like_labels(outputs):
        return {"matches_baseline": {"labels": _labels(outputs)}}
    return ["matches_baseline"]


def _labels(values: Sequence[str | None]) -> list[str]:
    return sorted({" ".join(v.split()).casefold() for v in values if v and v.strip()})


def strata(rows: Sequence[Row], by: str = "auto") -> list[str]:
    """A stratum per row: the normalised label (expected, else baseline) or an input-length quartile."""
    labels = [r.expected if r.expected is not None else r.baseline_output for r in rows]
    if by == "label" or (by == "auto" and looks_like_labels(labels)):
        return [" ".join((lab or "").split()).casefold() for lab in labels]
    if by not in ("auto", "length", "label"):
        raise UserError(f"unknown stratify {by!r}", where="dataset build",
                        hint="use auto, label or length")
    lengths = np.array([len(canonical_json(r.inputs)) for r in rows])
    if len(rows) == 0:
        return []
    cuts = np.quantile(lengths, [0.25, 0.5, 0.75])
    return [f"len-q{int(np.searchsorted(cuts, n, side='right'))}" for n in lengths]


def sample_and_split(
    rows: Sequence[Row], *, size: int | None, holdout_fraction: float, seed: int, stratify: str = "auto"
) -> list[tuple[Row, str]]:
    """Deterministic stratified sample (proportional allocation) and search/holdout split."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise UserError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}",
                        where="dataset build", hint="e.g. 0.3 keeps 30 % of items for certification")
    ordered = sorted(rows, key=lambda r: r.key)  # independent of log order
    keys = strata(ordered, stratify)
    groups: dict[str, list[Row]] = defaultdict(list)
    for row, key in zip(ordered, keys):
        groups[key].append(row)
    rng = np.random.default_rng(seed)
    total = len(ordered)
    cap = total if size is None else min(size, total)
    names = sorted(groups)
    quotas = {k: cap * len(groups[k]) / total if total else 0 for k in names}
    counts = {k: int(np.floor(q)) for k, q in quotas.items()}
    for k in sorted(names, key=lambda k: (-(quotas[k] - counts[k]), k))[: cap - sum(counts.values())]:
        counts[k] += 1  # largest remainders
    chosen: list[tuple[Row, str]] = []
    for k in names:
        picked = [groups[k][i] for i in rng.permutation(len(groups[k]))[: counts[k]]]
        n_hold = int(round(len(picked) * holdout_fraction))
        chosen += [(row, "holdout" if i < n_hold else "search") for i, row in enumerate(picked)]
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def production_version(session: Session, prompt_id: int, label: str = PRODUCTION) -> PromptVersion:
    """The version of the prompt carrying `label` (core.store's one query for it)."""
    version_id = production_version_id(session=session, prompt_id=prompt_id, label=label)
    if version_id is not None:
        version = session.get(PromptVersion, version_id)
        assert version is not None  # a foreign key
        return version
    raise NotFound(
        f"prompt {prompt_id} has no version labelled {label!r}",
        where=f"prompt id {prompt_id}",
        hint="pass version_id= explicitly, or label a version in your prompt store and run sync",
    )


def build_from_logs(
    session: Session,
    *,
    prompt_id: int,
    version_id: int | None = None,
    label: str = PRODUCTION,
    size: int | None = 500,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    stratify: str = "auto",
    name: str | None = None,
    expected_from: str | None = None,
) -> Dataset:
    """A dataset from one version's logs (reused when the same content already exists).

    `expected_from` names a feedback entry (e.g. a reviewer's corrected label) whose value is
    the item's expected output; without it items have no gold answer.
    """
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="dataset build",
                       hint="list prompts with GET /prompts, or run `trimloop sync` first")
    version = session.get(PromptVersion, version_id) if version_id else production_version(
        session, prompt_id, label)
    if version is None or version.prompt_id != prompt_id:
        raise NotFound(f"no version {version_id} of prompt {prompt.name!r}", where="dataset build",
                       hint="pick a version id of this prompt")
    # the four columns an item needs, not whole records: a version keeps up to 2,000 a day (reservoir),
    # ~60,000 over 30 days, and loading them as objects (every JSON column decoded) took most of the build
    logs = session.exec(
        select(LogRecord.id, LogRecord.inputs, LogRecord.output, LogRecord.feedback)
        .where(LogRecord.version_id == version.id, col(LogRecord.output).is_not(None))
        .order_by(col(LogRecord.called_at), col(LogRecord.id))
    ).all()
    if not logs:
        raise NotFound(
            f"version {version.id} of prompt {prompt.name!r} has no logged outputs",
            where=f"prompt {prompt.name!r} version {version.sha[:12]}",
            hint="sync logs for this version first, or import a gold set with import_file()",
        )
    rows = log_rows(logs, expected_from=expected_from)
    config = {"label": label, "size": size, "expected_from": expected_from, "holdout_fraction": holdout_fraction,
              "stratify": stratify, "logs": len(logs), "unique_inputs": len(rows)}
    chosen = sample_and_split(list(rows.values()), size=size, holdout_fraction=holdout_fraction,
                              seed=seed, stratify=stratify)
    return _store(session, prompt_id=prompt_id, version=version, source="logs", seed=seed,
                  chosen=chosen, config=config,
                  name=name or f"{prompt.name}@{version.sha[:8]} logs (seed {seed})")


def log_rows(logs: Sequence[Any], *, expected_from: str | None = None) -> dict[str, Row]:
    """One Row per distinct inputs (the earliest call, oldest first in `logs`), with every
    duplicate's feedback gathered; `expected` from the feedback named `expected_from`. `logs` are
    LogRecords or rows with their `id`, `inputs`, `output` and `feedback`."""
    rows: dict[str, Row] = {}
    for log in logs:
        row = Row(inputs=log.inputs, baseline_output=log.output, feedback=list(log.feedback or []),
                  log_id=log.id, expected=_expected(log.feedback, expected_from))
        first = rows.setdefault(row.key, row)
        if first is not row:
            first.feedback.extend(log.feedback or [])
    return rows


def _expected(feedback: list[dict[str, Any]] | None, name: str | None) -> str | None:
    if not name:
        return None
    for entry in feedback or []:
        if isinstance(entry, dict) and entry.get("name") == name and entry.get("value") is not None:
            value = entry["value"]
            return value if isinstance(value, str) else canonical_json(value)
    return None


def _store(session: Session, *, prompt_id: int, version: PromptVersion | None, source: str,
           seed: int, chosen: list[tuple[Row, str]], config: dict[str, Any], name: str) -> Dataset:
    content = {
        "prompt_id": prompt_id, "version": version.sha if version else None, "source": source,
        "seed": seed,
        "items": [[r.inputs, r.expected, r.baseline_output, split] for r, split in chosen],
    }
    digest = sha256_of(content)
    existing = session.exec(select(Dataset).where(Dataset.content_hash == digest)).first()
    if existing is not None:
        return existing
    dataset = Dataset(prompt_id=prompt_id, version_id=version.id if version else None, name=name,
                      source=source, content_hash=digest, seed=seed,
                      config=config | {"search": sum(s == "search" for _, s in chosen),
                                       "holdout": sum(s == "holdout" for _, s in chosen)})
    session.add(dataset)
    session.flush()
    for position, (row, split) in enumerate(chosen):
        session.add(DatasetItem(dataset_id=dataset.id, position=position, split=split,
                                inputs=row.inputs, expected=row.expected,
                                baseline_output=row.baseline_output, feedback=row.feedback,
                                log_id=row.log_id))
    session.flush()
    return dataset


def dataset_items(session: Session, dataset_id: int, split: str | None = None) -> list[DatasetItem]:
    """The items of a dataset in position order, optionally one split."""
    query = select(DatasetItem).where(DatasetItem.dataset_id == dataset_id)
    if split is not None:
        if split not in ("search", "holdout"):
            raise UserError(f"unknown split {split!r}", where=f"dataset {dataset_id}",
                            hint="use 'search' or 'holdout'")
        query = query.where(DatasetItem.split == split)
    return list(session.exec(query.order_by(col(DatasetItem.position))).all())
