"""Datasets from logs: version choice, dedupe, stratification, cap, split, content hash."""

from __future__ import annotations

from collections import Counter

import pytest

from trimloop.core.db import session_scope
from trimloop.core.errors import NotFound
from trimloop.evals.datasets import Row, build_from_logs, dataset_items, looks_like_labels, strata

from tests.evals.helpers import add_logs, add_prompt, add_version


def _label_logs(n: int):
    return [(f"review number {i} " + "x" * (i % 13), "positive" if i % 4 else "negative") for i in range(n)]


def test_builds_a_stratified_deduplicated_split_dataset(engine) -> None:
    prompt = add_prompt(engine)
    add_version(engine, prompt, labels=("staging",), model="fake/old")
    version = add_version(engine, prompt)
    rows = _label_logs(200)
    add_logs(engine, prompt, version, rows + rows[:30], start=0)  # 30 duplicated inputs
    with session_scope(engine) as session:
        dataset = build_from_logs(session, prompt_id=prompt, size=100, holdout_fraction=0.3, seed=1)
        items = dataset_items(session, dataset.id)
        assert dataset.version_id == version and dataset.source == "logs"
        assert dataset.config["unique_inputs"] == 200 and dataset.config["logs"] == 230
    assert len(items) == 100
    assert len({i.inputs["text"] for i in items}) == 100
    splits = Counter(i.split for i in items)
    assert splits == {"search": 70, "holdout": 30}
    labels = Counter(i.baseline_output for i in items)
    assert labels == {"positive": 75, "negative": 25}  # proportional to the logs (3:1)
    holdout = Counter(i.baseline_output for i in items if i.split == "holdout")
    assert 6 <= holdout["negative"] <= 9
    assert all(i.log_id is not None for i in items)


def test_same_logs_and_seed_give_the_same_dataset_row(engine) -> None:
    prompt = add_prompt(engine)
    version = add_version(engine, prompt)
    add_logs(engine, prompt, version, _label_logs(120))
    with session_scope(engine) as session:
        first = build_from_logs(session, prompt_id=prompt, size=50, seed=3)
        again = build_from_logs(session, prompt_id=prompt, size=50, seed=3)
        other = build_from_logs(session, prompt_id=prompt, size=50, seed=4)
        assert first.id == again.id and first.content_hash == again.content_hash
        assert other.id != first.id
        a = [(i.inputs, i.split) for i in dataset_items(session, first.id)]
        b = [(i.inputs, i.split) for i in dataset_items(session, other.id)]
        assert a != b


def test_duplicates_keep_the_first_output_and_merge_feedback(engine) -> None:
    prompt = add_prompt(engine)
    version = add_version(engine, prompt)
    add_logs(engine, prompt, version, [("same", "positive")] + [("other", "negative")] * 6 + [("same", "negative")])
    with session_scope(engine) as session:
        items = dataset_items(session, build_from_logs(session, prompt_id=prompt, holdout_fraction=0).id)
    same = next(i for i in items if i.inputs["text"] == "same")
    assert same.baseline_output == "positive" and len(items) == 2
    assert [f["name"] for f in same.feedback] == ["thumbs", "thumbs"]  # logs 0 and 7


def test_missing_version_or_logs_say_how_to_fix(engine) -> None:
    prompt = add_prompt(engine)
    with session_scope(engine) as session:
        with pytest.raises(NotFound, match="no version labelled 'production'") as info:
            build_from_logs(session, prompt_id=prompt)
        assert "sync" in info.value.hint
    add_version(engine, prompt)
    with session_scope(engine) as session:
        with pytest.raises(NotFound, match="no logged outputs"):
            build_from_logs(session, prompt_id=prompt)
        with pytest.raises(NotFound, match="no prompt with id 999"):
            build_from_logs(session, prompt_id=999)


def test_label_detection_and_length_strata() -> None:
    assert looks_like_labels(["positive", "Negative", "positive ", "negative", "positive"])
    assert not looks_like_labels([f"a long free text answer number {i}" for i in range(10)])
    assert not looks_like_labels(["a", "b", "c", "d"])  # every output distinct: not classes
    rows = [Row(inputs={"t": "x" * n}, baseline_output=f"essay {n}") for n in range(1, 101)]
    assert Counter(strata(rows)) == {"len-q0": 25, "len-q1": 25, "len-q2": 25, "len-q3": 25}
