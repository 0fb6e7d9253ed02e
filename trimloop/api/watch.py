"""The post-deploy watch, run after every sync (services.sync is the one path).

For each deployed suggestion, from the moment its version could take traffic (its deploy to
`staging`): its live signals (evaluators against the gold in feedback, feedback values) against the
version it replaced — concurrently when both serve traffic, else the old version's pre-deploy
window — and, when the prompt's policy budgets it, paired shadow scores (a sample of live inputs
re-run through the old version via the gateway: evals.control). The anytime-valid verdict
(evals.watch) is stored with its numbers; a change of verdict is audited; `regressed` sends a
`watch.regressed` webhook and, under `on_regression = "rollback"`, moves `production` back through
the existing rollback (audited, announced); `holding` promotes a staging version under
`on_holding = "promote"`. Each action happens once per watch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from trimloop.api import deploy as write_back
from trimloop.api import webhooks
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.errors import TrimloopError
from trimloop.core.settings import Settings
from trimloop.core.status import SuggestionStatus, WatchVerdict
from trimloop.core.tables import (Deployment, LogRecord, Prompt, PromptVersion, ShadowScore, Suggestion, Watch,
                                  as_utc, utcnow)
from trimloop.evals.datasets import default_evaluators
from trimloop.evals.evaluators import NamedEvaluator, build_evaluators
from trimloop.evals.control import Answered, run_control
from trimloop.evals.watch import (SignalCheck, WatchPolicy, gold, log_signals, overall, paired_check,
                                  per_signal_alpha, unpaired_check, watch_policy)
from trimloop.optimizer.config import run_config

log = logging.getLogger("trimloop.api.watch")


@dataclass(frozen=True)
class _Options:
    """A prompt's evaluators and test options, as its runs read them (optimizer.config.run_config)."""

    evaluators: list[NamedEvaluator]
    margin: float
    margins: dict[str, float]
    alpha: float


def eval_config(settings: Settings, name: str) -> _Options:
    config = run_config(settings, name)
    evaluators = build_evaluators(config.evaluators or default_evaluators(), where=f"[prompts.{name}].evaluators")
    return _Options(evaluators=evaluators, margin=config.margin, margins=dict(config.margins), alpha=config.alpha)
ACTOR = "trimloop watch"
HISTORY = 200  # looks kept in a watch's history
T = TypeVar("T")
WATCHED = (SuggestionStatus.deployed, SuggestionStatus.promoting)


@dataclass
class WatchOutcome:
    """What one look at one watch found and did."""

    suggestion_id: int
    verdict: WatchVerdict
    changed: bool
    action: str | None = None
    error: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, in a thread of its own when this thread
    already runs an event loop (a sync called from async code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def thread() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=thread, name="trimloop-watch")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _ensure_watches(session: Session) -> list[Watch]:
    """A watch for every deployed suggestion (created at its first look), started at its deploy."""
    rows = session.exec(select(Suggestion).where(col(Suggestion.status).in_(WATCHED))).all()
    watches = []
    for s in rows:
        watch = session.exec(select(Watch).where(Watch.suggestion_id == s.id)).first()
        if watch is None:
            deployed = session.exec(select(func.min(Deployment.created_at)).where(
                Deployment.suggestion_id == s.id, Deployment.action == "deploy", Deployment.status == "done")).one()
            watch = Watch(suggestion_id=s.id, prompt_id=s.prompt_id, old_version_id=s.baseline_version_id,
                          new_version_id=s.candidate_version_id, started_at=deployed or s.decided_at or utcnow())
            session.add(watch)
            session.flush()
        watches.append(watch)
    return watches


def _logs(session: Session, version_id: int, since: datetime | None, until: datetime | None,
          limit: int) -> list[LogRecord]:
    """A version's logs in [since, until), oldest first (the order the watch sees them in)."""
    query = select(LogRecord).where(LogRecord.version_id == version_id)
    if since is not None:
        query = query.where(col(LogRecord.called_at) >= since)
    if until is not None:
        query = query.where(col(LogRecord.called_at) < until)
    return list(session.exec(query.order_by(col(LogRecord.called_at), col(LogRecord.id)).limit(limit)).all())


def _signals(records: list[LogRecord], evaluators: Any, expected_from: str | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for key, value in log_signals(output=r.output, inputs=r.inputs, feedback=r.feedback,
                                      evaluators=evaluators, expected_from=expected_from).items():
            out[key].append(value)
    return out


def _shadow_sample(watch: Watch, records: list[LogRecord], done: set[int], room: int) -> list[LogRecord]:
    """Up to `room` of the new version's logs not shadowed yet, a sample fixed by their ids (not
    the newest first, so a burst of one kind of input does not take the day's budget)."""
    fresh = [r for r in records if r.id not in done and r.output is not None]
    fresh.sort(key=lambda r: hashlib.sha256(f"{watch.id}:{r.id}".encode()).hexdigest())
    return fresh[:room]


def _shadow(*, engine: Engine, settings: Settings, watch_id: int, policy: WatchPolicy, name: str,
            now: datetime, gateway_factory: Callable[[], Any] | None) -> str | None:
    """Run today's share of shadow scoring for one watch; an error message when it could not."""
    evaluators = eval_config(settings, name).evaluators
    expected_from = run_config(settings, name).expected_from
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with session_scope(engine) as session:
        watch = session.get(Watch, watch_id)
        assert watch is not None
        spent_today = session.exec(select(func.count()).select_from(ShadowScore).where(
            ShadowScore.watch_id == watch_id, col(ShadowScore.created_at) >= day)).one()
        room = policy.shadow_per_day - int(spent_today)
        if room <= 0:
            return None
        done = set(session.exec(select(ShadowScore.log_id).where(ShadowScore.watch_id == watch_id)).all())
        records = _logs(session, watch.new_version_id, as_utc(watch.started_at), None, policy.max_items)
        sample = _shadow_sample(watch, records, done, room)
        old = session.get(PromptVersion, watch.old_version_id)
        assert old is not None
        answered = [Answered(id=r.id, inputs=r.inputs, output=r.output,  # type: ignore[arg-type]
                             expected=gold(r.feedback, expected_from)) for r in sample]
        template, model, params = old.template, old.model, dict(old.params or {})
    if not answered:
        return None
    if gateway_factory is None:
        from trimloop.api.executor import real_gateway

        gateway, starter = real_gateway(settings, engine)
    else:
        gateway, starter = gateway_factory(), None

    async def work() -> Any:
        try:
            return await run_control(template=template, model=model, params=params, answered=answered,
                                     evaluators=evaluators, gateway=gateway)
        finally:
            await gateway.aclose()

    try:
        pairs = run_async(work)
    except TrimloopError as exc:
        return f"shadow scoring failed: {exc.message}"
    finally:
        if starter is not None:
            starter.stop()
    with session_scope(engine) as session:
        for pair in pairs:
            session.add(ShadowScore(watch_id=watch_id, log_id=int(pair.id), new_scores=pair.new_scores,
                                    old_scores=pair.old_scores, old_output=pair.old_output, cost=pair.cost,
                                    error=pair.error, created_at=now))
    return None


def _look(session: Session, settings: Settings, watch: Watch, policy: WatchPolicy, name: str
          ) -> tuple[list[SignalCheck], str | None]:
    """Compute every signal's check for one watch from the store (the numbers of this look)."""
    config = eval_config(settings, name)
    expected_from = run_config(settings, name).expected_from
    alpha = policy.alpha if policy.alpha is not None else config.alpha
    started = as_utc(watch.started_at)
    new = _logs(session, watch.new_version_id, started, None, policy.max_items)
    old = _logs(session, watch.old_version_id, started, None, policy.max_items)
    window = "concurrent"
    if len(old) < policy.min_items:
        old = _logs(session, watch.old_version_id, started - timedelta(days=policy.pre_deploy_days), started,
                    policy.max_items)
        window = "pre_deploy"
    new_signals = _signals(new, config.evaluators, expected_from)
    old_signals = _signals(old, config.evaluators, expected_from)
    shadows = session.exec(select(ShadowScore).where(ShadowScore.watch_id == watch.id, col(ShadowScore.error).is_(None))
                           .order_by(col(ShadowScore.id))).all()
    paired: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for row in shadows:
        for key in row.new_scores.keys() & row.old_scores.keys():
            paired[key][0].append(float(row.new_scores[key]))
            paired[key][1].append(float(row.old_scores[key]))
    # a signal with enough paired shadow scores is judged on them (the design certification used, and
    # far more sensitive); the others on the unpaired comparison
    paired = {key: pair for key, pair in paired.items() if len(pair[0]) >= policy.min_items}
    unpaired_keys = sorted((new_signals.keys() & old_signals.keys()) - paired.keys())
    k = len(unpaired_keys) + len(paired)
    a = per_signal_alpha(alpha, k)

    suggestion = session.get(Suggestion, watch.suggestion_id)
    certified = {k: e.margin for k, e in suggestion.evidence.evaluators.items()
                 if e.margin is not None} if suggestion is not None else {}

    def margin(key: str) -> float:
        """The policy's margin, else the one the suggestion was certified at, else the prompt's."""
        if policy.margin is not None:
            return policy.margin
        if key in certified:
            return float(certified[key])  # type: ignore[arg-type]
        return config.margins.get(key.removeprefix("feedback:"), config.margin)

    checks = [paired_check(key, *paired[key], alpha=a, margin=margin(key), min_items=policy.min_items)
              for key in sorted(paired)]
    checks += [unpaired_check(key, new_signals[key], old_signals[key], alpha=a, margin=margin(key),
                              min_items=policy.min_items, old_fixed=window == "pre_deploy") for key in unpaired_keys]
    watch.n_new, watch.n_old, watch.baseline_window = len(new), len(old), window
    watch.shadow_items = len(shadows)
    watch.shadow_cost = float(sum(row.cost for row in shadows))
    return checks, window


def check_watches(*, engine: Engine, settings: Settings, now: datetime | None = None,
                  gateway_factory: Callable[[], Any] | None = None,
                  transport: Any = None) -> list[WatchOutcome]:
    """Look at every deployed suggestion's watch once: shadow, check, store, act. Never raises for one
    watch's trouble (a bad policy, a failed rollback): that watch's outcome carries the error."""
    now = now or utcnow()
    with session_scope(engine) as session:
        ids = [(w.id, w.suggestion_id, w.prompt_id) for w in _ensure_watches(session)]
        names = dict(session.exec(select(Prompt.id, Prompt.name)).all())
    outcomes = []
    for watch_id, suggestion_id, prompt_id in ids:
        name = names.get(prompt_id, "?")
        try:
            policy = watch_policy(settings, name)
        except TrimloopError as exc:
            outcomes.append(WatchOutcome(suggestion_id, WatchVerdict.inconclusive, False, error=exc.message))
            continue
        if not policy.enabled:
            continue
        try:
            shadow_error = None
            if policy.shadow_per_day > 0:
                shadow_error = _shadow(engine=engine, settings=settings, watch_id=watch_id, policy=policy,
                                       name=name, now=now, gateway_factory=gateway_factory)
            outcomes.append(_check_one(engine=engine, settings=settings, watch_id=watch_id, policy=policy,
                                       name=name, now=now, note=shadow_error, transport=transport))
        except TrimloopError as exc:  # e.g. the prompt's evaluators are misconfigured: the others go on
            log.warning("watch of suggestion %s not checked: %s", suggestion_id, exc.message)
            outcomes.append(WatchOutcome(suggestion_id, WatchVerdict.inconclusive, False, error=exc.message))
    return outcomes


def _check_one(*, engine: Engine, settings: Settings, watch_id: int, policy: WatchPolicy, name: str,
               now: datetime, note: str | None, transport: Any) -> WatchOutcome:
    with session_scope(engine) as session:
        watch = session.get(Watch, watch_id)
        assert watch is not None
        checks, _ = _look(session, settings, watch, policy, name)
        verdict = overall(checks)
        before = watch.verdict
        watch.checks = [c.as_dict() for c in checks]
        watch.verdict, watch.looks, watch.checked_at = verdict, watch.looks + 1, now
        watch.history = (list(watch.history) + [{"at": now.isoformat(), "verdict": verdict.value,
                                                  "n_new": watch.n_new, "n_old": watch.n_old}])[-HISTORY:]
        if note:
            watch.note = note
        session.add(watch)
        changed = verdict != before
        if changed:
            store.record_audit(session=session, actor=ACTOR, action="watch.verdict", object_type="suggestion",
                               object_id=watch.suggestion_id, before={"verdict": str(before)},
                               after={"verdict": verdict.value, "n_new": watch.n_new, "n_old": watch.n_old,
                                      "baseline_window": watch.baseline_window, "checks": watch.checks})
        suggestion_id, acted = watch.suggestion_id, watch.action
    outcome = WatchOutcome(suggestion_id, verdict, changed, checks=[c.as_dict() for c in checks])
    if verdict == WatchVerdict.regressed and acted in (None, "promoted"):
        outcome.action, outcome.error = _on_regression(engine, settings, watch_id, policy, name, checks, transport)
    elif verdict == WatchVerdict.holding and policy.on_holding == "promote" and acted is None:
        outcome.action, outcome.error = _promote(engine, settings, watch_id)
    return outcome


def _summary(name: str, suggestion_id: int, checks: list[SignalCheck]) -> str:
    worst = [c for c in checks if c.verdict == WatchVerdict.regressed]
    parts = [f"{c.signal} {c.mean_new:.3f} vs {c.mean_old:.3f} (new − old in [{c.low:+.3f}, {c.high:+.3f}], "
             f"n={c.n_new}/{c.n_old}, {c.mode})" for c in worst if c.mean_new is not None and c.mean_old is not None]
    return f"{name}: suggestion {suggestion_id} regressed on live traffic: " + "; ".join(parts)


def _on_regression(engine: Engine, settings: Settings, watch_id: int, policy: WatchPolicy, name: str,
                   checks: list[SignalCheck], transport: Any) -> tuple[str, str | None]:
    with session_scope(engine) as session:
        watch = session.get(Watch, watch_id)
        assert watch is not None
        suggestion_id, prompt_id = watch.suggestion_id, watch.prompt_id
    action, error = "alerted", None
    if policy.on_regression == "rollback":
        try:
            with session_scope(engine) as session:
                write_back.rollback(session=session, settings=settings, suggestion_id=suggestion_id, actor=ACTOR)
            action = "rolled_back"
        except TrimloopError as exc:
            action, error = "failed", f"rollback failed: {exc.message}"
            log.warning("watch of suggestion %s: %s", suggestion_id, error)
    with session_scope(engine) as session:
        watch = session.get(Watch, watch_id)
        assert watch is not None
        watch.action, watch.action_at = action, utcnow()
        if error:
            watch.note = error
        session.add(watch)
        store.record_audit(session=session, actor=ACTOR, action=f"watch.{action}", object_type="suggestion",
                           object_id=suggestion_id, after={"policy": policy.on_regression,
                                                           **({"error": error} if error else {})})
    data = {"suggestion_id": suggestion_id, "prompt_id": prompt_id, "prompt": name, "verdict": "regressed",
            "action": action, "checks": [c.as_dict() for c in checks],
            "summary": _summary(name, suggestion_id, checks) + (
                "; production rolled back to the old version" if action == "rolled_back" else
                f"; {error}" if error else "; alert only (policy on_regression = \"alert\")")}
    run_async(lambda: webhooks.notify(engine=engine, settings=settings, event="watch.regressed", data=data,
                                      transport=transport))
    return action, error


def _promote(engine: Engine, settings: Settings, watch_id: int) -> tuple[str | None, str | None]:
    with session_scope(engine) as session:
        watch = session.get(Watch, watch_id)
        assert watch is not None
        suggestion_id = watch.suggestion_id
        live = store.production_version_id(session=session, prompt_id=watch.prompt_id)
        if live == watch.new_version_id:  # already in production: nothing to promote
            return None, None
    action, error = "promoted", None
    try:
        with session_scope(engine) as session:
            write_back.promote(session=session, settings=settings, suggestion_id=suggestion_id, actor=ACTOR)
    except TrimloopError as exc:
        action, error = "failed", f"promote failed: {exc.message}"
    with session_scope(engine) as session:
        watch = session.get(Watch, watch_id)
        assert watch is not None
        watch.action, watch.action_at = action, utcnow()
        if error:
            watch.note = error
        session.add(watch)
        store.record_audit(session=session, actor=ACTOR, action=f"watch.{action}", object_type="suggestion",
                           object_id=suggestion_id, after={"policy": "on_holding = promote",
                                                           **({"error": error} if error else {})})
    return action, error
