"""Prompt health's trend check on simulated thumbs-up streams; prints JSON.

Each simulated prompt gets 40 calls a day for 14 days, thumbs up with probability 0.8 and, over
the last 3 days, `p_recent`; it is checked as the scheduler does after every sync, through
`evals.health.assess` (the last 3 days against the days before, `min_drop` 0 so that only the
confidence sequences decide). Reports the share of steady prompts (no change) ever called
`degraded` over 8 daily looks — the false-alarm rate, target ≤ α — and the share of changed ones
caught at day 14. Pure Python + numpy; `python -m bench.health [--streams N]`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import timedelta

from trimloop.core.evidence import HealthReport
from trimloop.core.tables import utcnow
from trimloop.evals.health import Call, assess, parse_health

ALPHA, PER_DAY, DAYS, BEFORE = 0.05, 40, 14, 0.8


def watched(rng: random.Random, p_recent: float, looks: range) -> bool:
    """One simulated prompt checked after each day in `looks`: ever called degraded?"""
    start = utcnow() - timedelta(days=DAYS)
    config = parse_health({"min_drop": 0.0, "alpha": ALPHA}, where="bench")
    calls = [Call(at=start + timedelta(days=d, minutes=k), output="ok",
                  feedback=[{"name": "thumbs", "value": rng.random() < (p_recent if d >= DAYS - 3 else BEFORE)}])
             for d in range(DAYS) for k in range(PER_DAY)]
    for day in looks:
        now = start + timedelta(days=day)
        seen = [c for c in calls if c.at < now]
        report = assess(seen, [], config, report=HealthReport(window_days=DAYS), split=now - timedelta(days=3))
        if report.verdict == "degraded":
            return True
    return False


def main(streams: int = 300, seed: int = 17) -> dict:
    rng = random.Random(seed)
    started = time.monotonic()
    out: dict = {"alpha": ALPHA, "calls_per_day": PER_DAY, "thumbs_up_before": BEFORE, "steady_streams": streams,
                 "looks": 8,
                 "false_alarm_rate": sum(watched(rng, BEFORE, range(7, DAYS + 1)) for _ in range(streams)) / streams}
    changed = max(20, streams // 3)
    out["caught_at_day_14"] = {str(p): sum(watched(rng, p, range(DAYS, DAYS + 1)) for _ in range(changed)) / changed
                               for p in (0.65, 0.55, 0.5)}
    out["changed_streams"] = changed
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300, help="steady prompts simulated")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    print(json.dumps(main(args.streams, args.seed), indent=2))
