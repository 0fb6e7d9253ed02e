"""Traffic sampling: a team that logs 1 % of its calls (sample_rate 0.01) gets the same calls per
day, spend and projected savings as one that logs them all, within sampling error.

The full stream is N = 200,000 calls over 28 days with costs uniform in [$0.0005, $0.0015]; the
sampled stream keeps each call with probability p = 0.01 (about 2,000 logs, stored with
sample_rate 0.01 and read back through the store as every report reads them), each counting as
1/p calls. The full stream's figures are exact (its sums, and `project` on all its calls). Every total the store reports from it is a Horvitz–Thompson estimate: for a total
Σ x_i over the full stream, the estimate Σ_kept x_i / p has variance (1 − p)/p · Σ x_i²
(independent Bernoulli keeps; for the call count x_i = 1, the binomial's N(1 − p)/p). The
projected monthly saving is calls per day × cost per call × (1 − cost ratio) = spend per day ×
(1 − ratio), the same estimator. Each comparison allows 3.5 standard deviations (two-sided
chance of a false failure about 5 in 10,000 for a fresh seed; the seed is fixed, so the test is
deterministic). Unweighted, the sampled stream would be off by a factor of 100.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert
from sqlmodel import select

from trimloop.api.reporting import spend
from trimloop.core import traffic
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.store import move_label
from trimloop.core.tables import DatasetItem, LogRecord, OptimizationRun, Prompt, PromptVersion
from trimloop.optimizer.baseline import log_facts
from trimloop.optimizer.due import prompt_facts
from trimloop.optimizer.savings import project

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
N, P, Z = 200_000, 0.01, 3.5
RATIO = 0.6  # the candidate costs 60 % of the baseline per call


@pytest.fixture
def streams(engine):
    """The full stream (in memory), and a 1 % sample of the same calls logged under prompt `sampled`."""
    rng = random.Random(20261201)
    calls = [(NOW - timedelta(days=27.9) + timedelta(days=27.9 * rng.random()), rng.uniform(0.0005, 0.0015))
             for _ in range(N)]
    kept = [c for c in calls if rng.random() < P]
    ids = {}
    with session_scope(engine) as session:
        for name in ("sampled",):
            prompt = Prompt(name=name, connector="files")
            session.add(prompt)
            session.flush()
            version = PromptVersion(prompt_id=prompt.id, sha=name * 8, template={"kind": "text", "text": "{{x}}"},
                                    model="local/gemma3-270m", connector="files")
            session.add(version)
            session.flush()
            move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
            ids[name] = (prompt.id, version.id)
            session.add(OptimizationRun(prompt_id=prompt.id, status="succeeded", created_at=NOW - timedelta(days=30)))
        for name, rows, rate in (("sampled", kept, P),):
            prompt_id, version_id = ids[name]
            session.execute(insert(LogRecord), [
                {"connector": "files", "external_id": f"{name}-{i}", "prompt_id": prompt_id, "version_id": version_id,
                 "inputs": {"x": i}, "output": "ok", "model": "local/gemma3-270m", "cost": cost, "latency_s": 0.2,
                 "called_at": at, "feedback": [], "meta": {}, "sample_rate": rate}
                for i, (at, cost) in enumerate(rows)])
        traffic.rebuild(session.connection())  # a bulk insert past the ORM: aggregate it as migration 0010 does
    return {"ids": ids, "calls": calls, "kept": kept}


def sd_of_total(values: list[float]) -> float:
    """Standard deviation of the Horvitz–Thompson estimate of Σ values from a Bernoulli(P) sample."""
    return math.sqrt((1 - P) / P * sum(v * v for v in values))


def projection(call_times, call_weights, logged_costs, cost_weights):
    return project(call_times=call_times, call_weights=call_weights, logged_costs=logged_costs,
                   cost_weights=cost_weights, baseline_latencies=[0.2], paired_costs=[(1.0, RATIO)] * 50,
                   candidate_latencies=[0.1], optimization_spend=1.0, now=NOW, n_boot=200)


def test_a_one_percent_sample_gives_the_full_streams_calls_spend_and_savings(engine, streams):
    costs = [c for _, c in streams["calls"]]
    assert 1700 < len(streams["kept"]) < 2300  # about N·P logs stand for N calls
    sd_calls, sd_spend = math.sqrt(N * (1 - P) / P), sd_of_total(costs)
    full = projection([t for t, _ in streams["calls"]], None, costs, None)
    prompt_id, version_id = streams["ids"]["sampled"]
    with session_scope(engine) as session:
        first = session.exec(select(LogRecord.id).where(LogRecord.version_id == version_id)).first()
        anchor = DatasetItem(id=1, dataset_id=0, position=0, split="holdout", log_id=first)  # the baseline version
        facts = log_facts(session, [anchor], prompt_id=prompt_id)  # what a run reads
        [row] = spend(session, NOW - timedelta(days=30))[1]  # what finance reads
        due = prompt_facts(session, Settings(), session.get(Prompt, prompt_id), now=NOW).new_logs  # the scheduler
    sampled = projection(facts.call_times, facts.call_weights, facts.logged_costs, facts.cost_weights)

    # calls per day: the 28-day window of each stream, per day
    assert full.window_days == sampled.window_days == 28
    assert full.calls_per_day == pytest.approx(N / 28)
    assert abs(sampled.calls_per_day - full.calls_per_day) <= Z * sd_calls / 28
    # projected monthly savings = spend per day × 30 × (1 − ratio)
    assert full.monthly == pytest.approx(sum(costs) / 28 * 30 * (1 - RATIO))
    assert abs(sampled.monthly - full.monthly) <= Z * sd_spend / 28 * 30 * (1 - RATIO)
    assert sampled.cost_ratio == pytest.approx(RATIO)
    # the spend report (finance) and the due rule's traffic count the same way
    assert row.prompt == "sampled" and abs(row.calls - N) <= Z * sd_calls
    assert abs(row.cost - sum(costs)) <= Z * sd_spend
    assert abs(due - N) <= Z * sd_calls
    # what unweighted counting would say: a hundredth of the traffic
    assert len(facts.call_times) < N / 50 and sum(facts.call_weights) > N / 2
    print(f"calls/day {full.calls_per_day:.1f} vs {sampled.calls_per_day:.1f} (±{Z * sd_calls / 28:.1f}); "
          f"monthly {full.monthly:.4f} vs {sampled.monthly:.4f} (±{Z * sd_spend / 28 * 30 * (1 - RATIO):.4f}); "
          f"spend {sum(costs):.3f} vs {row.cost:.3f}; calls {N} vs {row.calls}; due {due}")
