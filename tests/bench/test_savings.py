"""bench.savings on a small replay: the cache-aware projection lands within 5 % of the provider-billed
replay for every candidate, and the list-price projection misses the one that loses the cache by multiples."""

from __future__ import annotations

from bench.savings import run


def test_projection_matches_the_billed_replay() -> None:
    out = run(days=3, per_day=300, seed=3)
    assert set(out["candidates"]) == {"keeps_prefix", "under_minimum", "other_model"}
    for name, numbers in out["candidates"].items():
        assert abs(numbers["error"]) <= 0.05, (name, numbers)
        assert numbers["replayed_monthly"] > 0
    lost = out["candidates"]["under_minimum"]
    assert lost["cached_share_after"] == 0 and lost["naive_error"] > 1.0
    assert "falls under the 1,024-token cache minimum" in lost["note"]
