"""Finding: the one shape of doctor lines and run preflight findings."""

from __future__ import annotations

import dataclasses

import pytest

from trimloop.core.findings import Finding, ok, problem, warning, worst


def test_levels_order_from_ok_to_problem_and_a_bad_level_is_refused() -> None:
    assert worst([]) == "ok"
    assert worst([ok("a", "fine"), warning("b", "hm", "do x")]) == "warning"
    assert worst([warning("b", "hm"), problem("c", "broken", "fix it"), ok("a", "fine")]) == "problem"
    with pytest.raises(ValueError, match="must be one of ok, warning, problem"):
        Finding("error", "x", "y")  # type: ignore[arg-type]


def test_urls_lose_their_credentials_and_findings_are_frozen() -> None:
    found = problem("connector.unreachable", "cannot reach http://user:S3CRET@mlflow:5000/?token=T0KEN",
                    "check http://mlflow:5000/api?key=K3Y", connector="ml")
    assert "S3CRET" not in found.message and "T0KEN" not in found.message and "K3Y" not in found.fix
    assert "http://***@mlflow:5000/?***" in found.message and found.data == {"connector": "ml"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.level = "ok"  # type: ignore[misc]
