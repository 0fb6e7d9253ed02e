"""The post-deploy watch: false alarms, detection delay, and realized against projected cost.

- `false_alarm_rate`: the watch (evals.watch's checks, exactly as api/watch.py calls them) over
  `--streams` simulated no-change streams, checked after every batch of `--batch` live items up to
  `--items`, at margin 0 (the strictest: any significant drop alarms); a stream alarms if any look
  says `regressed`. Unpaired (the old version's pre-deploy window against the new version's traffic)
  and paired (shadow scores: both versions on the same inputs) are both reported; the headline is
  the larger. Target ≤ alpha.
- `detection_delay_items`: median live items until `regressed` for a 5-point drop (0.90 → 0.85) at
  the default margin 0.02 with paired shadow scoring; by mode also unpaired against a pre-deploy
  window of 2,000 and of 10,000 calls (inf = not within 20,000 items in most runs).
- `realized_over_projected_cost`: on the bundled models, the demo's movie-sentiment prompt gets real
  logs, a real optimization run, approval, deploy and promotion through the files connector; then
  fresh traffic of the deployed version (new inputs from the same source, really run) is synced,
  and the savings report's realized cost per call is divided by the suggestion's projected one.
  Target 0.85–1.15. `--no-models` skips it.

    python -m bench.watch [--streams 1000] [--items 2000] [--batch 25] [--fresh 150] [--no-models]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._util import machine
from trimloop.evals.watch import betting_bounds

ALPHA = 0.05
BASE, DROP = 0.90, 0.05


def _first_alarm(new: np.ndarray, old: np.ndarray, *, paired: bool, margin: float, batch: int,
                 min_items: int = 30) -> int | None:
    """Items of new traffic at the first look (one per `batch` items) whose verdict is `regressed`.

    The bounds are computed once over the whole stream: the confidence sequence is predictable, so
    its value after n items is what `paired_check` / `unpaired_check` compute on the first n (a test
    checks this), and the verdict rule is theirs (`_verdict`)."""
    looks = np.arange(batch, len(new) + 1, batch)
    looks = looks[looks >= min_items]
    if paired:
        low, high = betting_bounds((new - old + 1.0) / 2.0, ALPHA)
        hi = 2 * high[looks - 1] - 1
    else:
        new_low, new_high = betting_bounds(new, ALPHA / 2)
        old_low, _ = betting_bounds(old, ALPHA / 2, fixed=True)  # the pre-deploy window: fixed
        hi = new_high[looks - 1] - old_low[-1]
    alarms = np.nonzero(hi < -margin)[0]
    return int(looks[alarms[0]]) if len(alarms) else None


def simulate(streams: int, items: int, batch: int, old_window: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    alarms = {"unpaired": 0, "paired": 0}
    for _ in range(streams):
        old = rng.binomial(1, BASE, old_window).astype(float)
        new = rng.binomial(1, BASE, items).astype(float)
        alarms["unpaired"] += _first_alarm(new, old, paired=False, margin=0.0, batch=batch) is not None
        old_same = rng.binomial(1, BASE, items).astype(float)  # paired, no change: independent answers, same rate
        alarms["paired"] += _first_alarm(new, old_same, paired=True, margin=0.0, batch=batch) is not None
    rates = {k: v / streams for k, v in alarms.items()}

    modes = {"paired": None, f"unpaired_old_{old_window}": old_window, "unpaired_old_10000": 10_000}
    delays: dict[str, list[float]] = {m: [] for m in modes}
    misses = dict.fromkeys(modes, 0)
    runs = max(200, streams // 5)
    longest = 20_000
    for _ in range(runs):
        for mode, window in modes.items():
            if window is None:  # shadow: the old version right where the new is, and on 5 points more
                old = rng.binomial(1, BASE, longest).astype(float)
                lose = rng.binomial(1, DROP / BASE, longest).astype(float)
                first = _first_alarm(old * (1 - lose), old, paired=True, margin=0.02, batch=batch)
            else:
                old = rng.binomial(1, BASE, window).astype(float)
                new = rng.binomial(1, BASE - DROP, longest).astype(float)
                first = _first_alarm(new, old, paired=False, margin=0.02, batch=batch)
            delays[mode].append(first if first is not None else float("inf"))
            misses[mode] += first is None
    return {
        "false_alarm_rate": max(rates.values()),
        "false_alarm_rate_by_mode": rates,
        "false_alarm_setup": {"streams": streams, "items": items, "batch": batch, "looks": items // batch,
                              "old_window": old_window, "p": BASE, "margin": 0.0},
        "detection_delay_items": statistics.median(delays["paired"]),
        "detection_delay_items_by_mode": {k: statistics.median(v) for k, v in delays.items()},
        "detection_setup": {"runs": runs, "drop": f"{BASE:.2f} -> {BASE - DROP:.2f}", "margin": 0.02,
                            "batch": batch, "max_items": longest, "not_detected_within_max": misses,
                            "headline": "paired (shadow scoring); unpaired needs a long pre-deploy window"},
    }


def realized_over_projected(folder: Path, fresh: int) -> dict[str, Any]:
    """The demo's movie-sentiment on the bundled models: optimize, deploy, promote, fresh traffic."""
    from sqlmodel import select

    from trimloop.api import deploy as write_back
    from trimloop.api import services
    from trimloop.api.demo import workspace
    from trimloop.api.demo.data import reviews
    from trimloop.api.executor import real_gateway
    from trimloop.api.reporting import realized_rows
    from trimloop.core import store
    from trimloop.core.db import get_engine, session_scope, upgrade
    from trimloop.core.settings import get_settings, load_settings
    from trimloop.core.tables import Prompt, PromptVersion, Suggestion, utcnow
    from trimloop.core.templates import Template, render
    from trimloop.optimizer.queue import claim_run, execute_claimed, worker_id

    workspace.create(folder)
    os.chdir(folder)
    os.environ["TRIMLOOP_CONFIG"] = str(folder / "trimloop.toml")
    get_settings.cache_clear()
    settings = load_settings()
    upgrade(settings.db_url)
    engine = get_engine(settings)
    name = "movie-sentiment"
    prompts = [p for p in workspace.demo_prompts(1.0) if p.name == name]
    started = time.monotonic()
    gateway, starter = real_gateway(settings, engine)
    try:
        asyncio.run(workspace.produce_logs(folder, gateway, prompts, lambda *_: None))
        services.sync(engine=engine, settings=settings, actor="bench")
        with session_scope(engine) as session:
            prompt_id = session.exec(select(Prompt.id).where(Prompt.name == name)).one()
        run_id = services.start_run(engine=engine, settings=settings, prompt_id=prompt_id, actor="bench")
        me = worker_id()
        assert claim_run(engine, run_id=run_id, worker=me)
        run = asyncio.run(execute_claimed(engine=engine, settings=settings, run_id=run_id,
                                          gateway=gateway.for_another_loop(), worker=me))
        with session_scope(engine) as session:
            suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).first()
            if suggestion is None:
                return {"realized_over_projected_cost": None,
                        "why": f"the run made no suggestion: {run.results.no_suggestion or run.error}"}
            sid = suggestion.id
            store.approve_suggestion(session=session, suggestion_id=sid, reviewer="bench")
        with session_scope(engine) as session:
            write_back.deploy(session=session, settings=settings, suggestion_id=sid, actor="bench")
        with session_scope(engine) as session:
            write_back.promote(session=session, settings=settings, suggestion_id=sid, actor="bench")
        with session_scope(engine) as session:
            s = session.get(Suggestion, sid)
            version = session.get(PromptVersion, s.candidate_version_id)  # type: ignore[union-attr]
            template, model, params = Template.model_validate(version.template), version.model, dict(version.params)
            external, projected = version.external_version, s.candidate_cost_per_call  # type: ignore[union-attr]
            lineage = [step.detail for step in s.evidence.lineage]  # type: ignore[union-attr]
        inputs = reviews(fresh, seed=1234)  # new inputs from the same source as the logged ones
        now = utcnow()

        async def traffic() -> list[str]:
            g = gateway.for_another_loop()
            limit = asyncio.Semaphore(2)

            async def one(i: int, item: dict[str, str], expected: str) -> str:
                prompt = render(template, item)
                kwargs = {"messages": prompt} if isinstance(prompt, list) else {"text": prompt}
                async with limit:
                    result = await g.call(model, params=params, **kwargs)
                return json.dumps({"id": f"fresh-{i}", "prompt": name, "version": external, "inputs": item,
                                   "output": result.output, "model": model, "input_tokens": result.input_tokens,
                                   "output_tokens": result.output_tokens, "cost": result.cost,
                                   "latency_s": round(result.latency_s, 4), "called_at": now.isoformat(),
                                   "feedback": [{"name": "expected", "value": expected, "source": "reviewer"}]})
            try:
                return await asyncio.gather(*[one(i, x, y) for i, (x, y) in enumerate(inputs)])
            finally:
                await g.aclose()

        lines = asyncio.run(traffic())
        (folder / "store" / "logs" / "fresh.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        outcome = services.sync(engine=engine, settings=settings, actor="bench")
    finally:
        starter.stop()
    with session_scope(engine) as session:
        [row] = [r for r in realized_rows(session, {prompt_id: name}) if r.suggestion_id == sid]
    [look] = [w for w in outcome.watches if w.suggestion_id == sid] or [None]
    ratio = row.realized_cost_per_call / projected if row.realized_cost_per_call and projected else None
    return {
        "realized_over_projected_cost": ratio,
        "projected_cost_per_call": projected, "realized_cost_per_call": row.realized_cost_per_call,
        "realized_cost_per_call_interval": [row.realized_cost_per_call_low, row.realized_cost_per_call_high],
        "realized_calls": row.realized_calls, "realized_monthly_savings": row.realized_monthly_savings,
        "window_note": row.window_note, "suggestion": {"id": sid, "change": lineage},
        "watch": {"verdict": look.verdict.value if look else None, "checks": look.checks if look else []},
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--old-window", type=int, default=2000)
    parser.add_argument("--fresh", type=int, default=150)
    parser.add_argument("--no-models", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="workspace for the bundled-model part")
    args = parser.parse_args(argv)
    started = time.monotonic()
    out: dict[str, Any] = {"alpha": ALPHA, **simulate(args.streams, args.items, args.batch, args.old_window)}
    out["simulation_seconds"] = round(time.monotonic() - started, 1)
    if args.no_models:
        out["realized_over_projected_cost"] = None
    else:
        folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-watch-"))
        out.update(realized_over_projected(folder.resolve(), args.fresh))
    out["machine"] = machine()
    json.dump(out, sys.stdout, indent=2, default=str)
    print()


if __name__ == "__main__":
    main()
