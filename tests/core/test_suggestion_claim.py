"""What a suggestion serves, read from its typed evidence (issue 21): the objective in words, the
one-line claim (`Evidence.cut_line`, the one place it is formatted) and the latency claim — on
cost, latency and repair suggestions, and on rows written before `kind = latency` existed."""

from __future__ import annotations

from trimloop.core.evidence import Evidence
from trimloop.core.status import SuggestionKind
from trimloop.core.tables import Suggestion

HOLDS = {"label": {"verdict": "non-inferior", "passed": True, "margin": 0.02, "n": 240}}
LATENCY = {"objective": "latency p95", "stat": "p95", "n": 240, "before_s": 1.9, "after_s": 1.1, "ratio": 0.58,
           "ratio_upper": 0.66, "min_effect": 0.05, "passed": True, "cost_change": 0.03,
           "line": "p95 1.9 s → 1.1 s, −42 %, cost +3 %"}


def suggestion(evidence: dict, before: float | None = 0.002, after: float | None = 0.0012,
               kind: SuggestionKind = SuggestionKind.cost) -> Suggestion:
    return Suggestion(prompt_id=1, baseline_version_id=1, candidate_version_id=2, candidate_sha="c" * 64, kind=kind,
                      baseline_cost_per_call=before, candidate_cost_per_call=after,
                      evidence=Evidence.model_validate(evidence))


def test_a_cost_suggestion_claims_its_cost_cut():
    s = suggestion({"kind": "cost", "evaluators": HOLDS})
    assert s.objective == "cost" and s.latency is None
    assert s.claim == "−40 % cost per call, label holds (margin 0.02, n 240)"


def test_a_latency_suggestion_claims_its_latency_cut_first_and_its_cost_change():
    s = suggestion({"kind": "latency", "evaluators": HOLDS, "latency": LATENCY}, after=0.00206,
                   kind=SuggestionKind.latency)
    assert s.objective == "latency p95" and s.latency is not None and s.latency.ratio_upper == 0.66
    # the cost change is said once, in the latency claim's words
    assert s.claim == "p95 1.9 s → 1.1 s, −42 %, cost +3 %, label holds (margin 0.02, n 240)"


def test_a_cost_run_with_a_latency_cap_says_both():
    capped = LATENCY | {"objective": "cost (p95 ≤ 1.2 s)", "line": "p95 1.9 s → 1.1 s, −42 %, cost −40 %"}
    s = suggestion({"kind": "cost", "evaluators": HOLDS, "latency": capped})
    assert s.objective == "cost (p95 ≤ 1.2 s)" and s.claim.startswith("p95 1.9 s → 1.1 s, −42 %, cost −40 %, label")


def test_rows_written_before_the_latency_kind_still_say_their_objective():
    """A latency suggestion stored as kind cost (before `latency` existed), and one with no kind at all."""
    old = suggestion({"kind": "cost", "evaluators": HOLDS, "latency": LATENCY})
    assert old.objective == "latency p95" and old.claim.startswith("p95 1.9 s → 1.1 s")
    older = suggestion({"evaluators": HOLDS}, before=None, after=None)
    assert older.objective == "cost" and older.claim == "label holds (margin 0.02, n 240)"
    assert suggestion({}, before=None, after=None).claim == "certified"


def test_a_repair_claims_its_gain():
    s = suggestion({"kind": "repair", "evaluators": HOLDS, "repair": {
        "gains": {"label": {"before": 0.02, "after": 0.64, "delta": 0.62, "lower": 0.54, "min_effect": 0.05}},
        "cost_change": 0.35}}, kind=SuggestionKind.repair)
    assert s.objective == "repair"
    assert s.claim == "repair: label +0.62 (0.02 → 0.64, lower bound +0.54 > +0.05), cost per call +35 %"


def test_some_evaluators_failing_are_counted():
    s = suggestion({"evaluators": HOLDS | {"rouge": {"verdict": "inconclusive", "passed": False, "margin": 0.05,
                                                    "n": 200}}}, before=0.002, after=0.003)
    assert s.claim == "+50 % cost per call, 1 of 2 evaluators hold (margin 0.05, n 240)"
