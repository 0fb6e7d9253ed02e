"""Log line parsing: the fast path and the full validator agree on every line the fast path takes."""

from __future__ import annotations

import json

import pytest

from tests.connectors.helpers import log_line
from trimloop.connectors import files_logs
from trimloop.connectors.files_logs import full_path, parse_line
from trimloop.connectors.sync import unstorable


@pytest.mark.parametrize("line", [
    log_line(1),
    log_line(2, feedback=[{"name": "stars", "value": 4.5}], meta={"tier": "pro"}, output=None),
    log_line(3, called_at="2025-06-01T12:00:00+02:00", cost=0, latency_s=1),
    log_line(4, version=None, model=None, input_tokens=None),
])
def test_fast_path_matches_the_full_validator(line: str) -> None:
    raw = line.encode()
    fast = files_logs._fast_path(raw, "x:1")
    assert fast is not None and fast == full_path(raw, "x:1") == parse_line(raw, "x:1")


def test_a_fast_path_line_without_a_nul_escape_skips_the_nul_walk() -> None:
    """JSON holds a NUL only as the escape \\u0000 and no number that is inf or nan (orjson refuses
    them), so a line without that escape needs no walk through its strings; one with it does."""
    plain = files_logs._fast_path(log_line(1, meta={"a": [{"b": "c"}]}).encode(), "x:1")
    nul = files_logs._fast_path(log_line(2, meta={"a": [{"b": "c\u0000"}]}).encode(), "x:2")
    escaped = files_logs._fast_path(log_line(3, meta={"a": "\\u0000"}).encode(), "x:3")  # a backslash, no NUL
    assert plain is not None and plain.plain_text and unstorable("x:1", plain) is None
    assert nul is not None and not nul.plain_text
    problem = unstorable("x:2", nul)
    assert problem is not None and (problem.reason, problem.where) == ("nul_character", "x:2")
    assert problem.message.startswith("meta.a[0].b contains")
    assert escaped is not None and not escaped.plain_text and unstorable("x:3", escaped) is None
    assert not full_path(log_line(4).encode(), "x:4").plain_text  # only the fast path says so


@pytest.mark.parametrize("change", [
    {"version": 2}, {"input_tokens": -1}, {"input_tokens": True}, {"cost": "1"}, {"feedback": [{"name": ""}]},
    {"called_at": "yesterday"}, {"extra": 1}, {"inputs": []}, {"id": ""},
])
def test_anything_unusual_goes_to_the_full_validator(change: dict) -> None:
    record = json.loads(log_line(1))
    record.update(change)
    raw = json.dumps(record).encode()
    assert files_logs._fast_path(raw, "x:1") is None
    if change == {"version": 2}:  # the full validator decides: it accepts an int version …
        assert parse_line(raw, "x:1").version == "2"
    else:  # … and refuses the rest with a message
        with pytest.raises(ValueError):
            parse_line(raw, "x:1")
