"""Log line parsing: the fast path and the full validator agree on every line the fast path takes."""

from __future__ import annotations

import json

import pytest

from tests.connectors.helpers import log_line
from trimloop.connectors import files_logs
from trimloop.connectors.files_logs import full_path, parse_line


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
