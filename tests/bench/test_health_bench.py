"""`python -m bench.health` runs the real trend check and reports rates in [0, 1]."""

from bench.health import main


def test_the_health_bench_reports_false_alarms_and_detection():
    out = main(streams=12, seed=3)
    assert out["false_alarm_rate"] <= 0.1 and out["steady_streams"] == 12 and out["looks"] == 8
    caught = out["caught_at_day_14"]
    assert set(caught) == {"0.65", "0.55", "0.5"} and all(0 <= v <= 1 for v in caught.values())
    assert caught["0.5"] >= 0.7  # a 30-point drop over 3 days is caught
