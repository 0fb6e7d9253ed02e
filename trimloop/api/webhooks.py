"""Webhooks: POST an event to each configured URL, signed, retried with backoff, recorded.

Signature: `X-Trimloop-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the
timestamp in `X-Trimloop-Timestamp`, keyed by the secret in `secret_env` (default: secret_key).
A webhook whose `secret_env` is unset or empty is not sent (recorded as `secret_env_unset`).
`model.retiring` goes out for each production prompt whose model retires, at each of
`retirement_notice_days` before the date, once: a `Notification` row under a unique key is written
before the send, so a second pass (or worker) never sends it again. A webhook that did not take it
(down, 5xx past its retries) gets it again from a later pass (at least 5 minutes on, up to 8
passes), and only that webhook.
Every delivery (its attempts and outcome) is recorded as an AuditEvent `webhook.delivery`;
only the URL's host is recorded, since incoming-webhook URLs carry their secret in the path.
A webhook's host must be in `allowed_hosts` (checked when settings load, and again before each
delivery); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from trimloop.core.db import session_scope
from trimloop.core.egress import HostNotAllowed
from trimloop.core.errors import TrimloopError
from trimloop.core.retirement import retirement_of, today_of
from trimloop.core.settings import Settings, WebhookConfig
from trimloop.core.store import production_version_id, record_audit
from trimloop.core.tables import Notification, OptimizationRun, Prompt, PromptVersion, Suggestion, as_utc

log = logging.getLogger("trimloop.api.webhooks")
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value a receiver recomputes to trust the body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _secret(settings: Settings, hook: WebhookConfig) -> str | None:
    """The signing key; None when `secret_env` names a variable that is unset or empty in this
    process (such a webhook is not sent: a body signed with an empty key proves nothing)."""
    if hook.secret_env:
        return os.environ.get(hook.secret_env) or None
    return settings.secret_key.get_secret_value()


def link(settings: Settings, data: dict[str, Any]) -> str:
    base = settings.api.public_url.rstrip("/")
    if "suggestion_id" in data:
        return f"{base}/ui/suggestions/{data['suggestion_id']}"
    if "health" in data and "prompt_id" in data:
        return f"{base}/ui/prompts/{data['prompt_id']}/health"
    if "run_id" not in data and "prompt_id" in data:
        return f"{base}/prompts/{data['prompt_id']}"
    return f"{base}/runs/{data.get('run_id', '')}"


def body_for(settings: Settings, hook: WebhookConfig, event: str, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON body: trimloop's shape, or Slack's (`text` + blocks) for incoming webhooks."""
    url = link(settings, data)
    if hook.format == "slack":
        text = f"trimloop: {event.replace('.', ' ')}: {data.get('summary') or ''}".strip()
        return {"text": f"{text} <{url}|open>", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{event}*\n{data.get('summary') or ''}"}},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"},
                                              "url": url}]}]}
    return {"event": event, "id": str(uuid.uuid4()), "at": time.time(), "link": url, "data": data}


def hook_id(hook: WebhookConfig) -> str:
    """A webhook's name in the store: a hash of its URL (the URL itself may carry a secret)."""
    return hashlib.sha256(hook.url.encode()).hexdigest()[:16]


@dataclass
class Delivery:
    host: str
    event: str
    hook: str = ""  # hook_id
    ok: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)


async def _send(client: httpx.AsyncClient, settings: Settings, hook: WebhookConfig, event: str,
                data: dict[str, Any]) -> Delivery:
    payload = body_for(settings, hook, event, data)
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    delivery = Delivery(host=urlsplit(hook.url).hostname or "?", event=event, hook=hook_id(hook))
    try:
        settings.egress.check(hook.url, who="webhook")
    except HostNotAllowed:
        delivery.attempts.append({"attempt": 0, "error": "host_not_allowed"})
        return delivery
    secret = _secret(settings, hook)
    if secret is None:
        log.warning("webhook to %s not sent: its secret_env %s is unset or empty in this process; set it "
                    "where `trimloop serve` and `trimloop worker` run", delivery.host, hook.secret_env)
        delivery.attempts.append({"attempt": 0, "error": "secret_env_unset", "secret_env": hook.secret_env})
        return delivery
    for attempt in range(hook.max_retries + 1):
        if attempt:
            await asyncio.sleep(hook.backoff_base_s * 2 ** (attempt - 1))
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Trimloop-Event": event,
                   "X-Trimloop-Delivery": str(payload.get("id", uuid.uuid4())),
                   "X-Trimloop-Timestamp": stamp, "X-Trimloop-Signature": sign(secret, stamp, body)}
        try:
            reply = await client.post(hook.url, content=body, headers=headers, timeout=hook.timeout_s)
        except httpx.HTTPError as exc:
            delivery.attempts.append({"attempt": attempt + 1, "error": exc.__class__.__name__})
            continue
        except HostNotAllowed:
            delivery.attempts.append({"attempt": attempt + 1, "error": "host_not_allowed"})
            break
        delivery.attempts.append({"attempt": attempt + 1, "status": reply.status_code})
        if reply.is_success:
            delivery.ok = True
            break
        if reply.status_code not in RETRY_STATUSES:
            break
    return delivery


async def notify(*, engine: Engine, settings: Settings, event: str, data: dict[str, Any],
                 transport: httpx.AsyncBaseTransport | None = None, only: set[str] | None = None) -> list[Delivery]:
    """Deliver `event` to every webhook subscribed to it (`only`: those with these hook_ids) and
    record each delivery."""
    hooks = [h for h in settings.webhooks if event in h.events and (only is None or hook_id(h) in only)]
    if not hooks:
        return []
    async with httpx.AsyncClient(transport=transport, follow_redirects=False, event_hooks={
            "request": [settings.egress.async_request_hook("webhook")]}) as client:
        deliveries = await asyncio.gather(*(_send(client, settings, h, event, data) for h in hooks))
    await asyncio.to_thread(_record, engine, deliveries, data)
    return list(deliveries)


def _record(engine: Engine, deliveries: list[Delivery], data: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        for d in deliveries:
            record_audit(session=session, actor="trimloop", action="webhook.delivery", object_type="webhook",
                         object_id=d.host, after={"event": d.event, "ok": d.ok, "attempts": d.attempts,
                                                  "subject": {k: v for k, v in data.items() if k.endswith("_id")}})


async def announce_run(*, engine: Engine, settings: Settings, run_id: int) -> None:
    """After a run ends, however it was started (POST /runs, the scheduler, `trimloop worker`):
    `run.failed`, `run.blocked` (the preflight's root cause and its fix), or `suggestion.created`
    for each suggestion it left; a run that ended `baseline_unhealthy` also re-checks the prompt's
    health (`prompt.unhealthy` if it changed)."""
    def read() -> tuple[OptimizationRun | None, list[Suggestion]]:
        with session_scope(engine) as session:
            return (session.get(OptimizationRun, run_id),
                    list(session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).all()))

    run, suggestions = await asyncio.to_thread(read)
    if run is None:
        return
    if run.status == "baseline_unhealthy":  # the run found the baseline broken: bring the prompt's health up to date
        from trimloop.api import services  # services imports this module

        try:
            checked = await asyncio.to_thread(services.check_health, engine=engine, settings=settings,
                                              prompt_ids=[run.prompt_id])
        except TrimloopError as exc:
            log.warning("health of prompt %s not checked after run %s: %s", run.prompt_id, run_id, exc.message)
        else:
            await announce_health(engine=engine, settings=settings, changes=checked.changes)
    if not any(event in hook.events for hook in settings.webhooks
               for event in ("run.failed", "run.blocked", "suggestion.created")):
        return
    if run.status == "failed":
        await notify(engine=engine, settings=settings, event="run.failed",
                     data={"run_id": run_id, "prompt_id": run.prompt_id,
                           "summary": f"run {run_id} failed: {run.error or 'unknown error'}"})
    if run.status == "blocked":
        problems = run.results.problems()
        root = problems[0] if problems else None
        await notify(engine=engine, settings=settings, event="run.blocked",
                     data={"run_id": run_id, "prompt_id": run.prompt_id, "codes": [p.code for p in problems],
                           "summary": f"run {run_id} {run.results.outcome(run.status, run.error)}"
                                      + (f"; fix: {root.fix}" if root and root.fix else "")})
    for s in suggestions:
        await notify(engine=engine, settings=settings, event="suggestion.created", data=suggestion_event(s))


def suggestion_event(s: Suggestion) -> dict[str, Any]:
    saving = f"${s.projected_monthly_savings:,.2f}/month" if s.projected_monthly_savings is not None else "n/a"
    summary = f"suggestion {s.id} for prompt {s.prompt_id}: projected savings {saving}"
    repair = s.evidence.repair if s.kind == "repair" else None
    if repair is not None:
        summary = f"repair suggestion {s.id} for prompt {s.prompt_id}: {repair.line()}"
    elif s.latency is not None and s.objective.startswith("latency"):
        summary = f"{s.objective} suggestion {s.id} for prompt {s.prompt_id}: {s.claim}"
    latency = s.latency
    return {"suggestion_id": s.id, "prompt_id": s.prompt_id, "run_id": s.run_id, "status": s.status,
            "kind": str(s.kind), "objective": s.objective, "claim": s.claim,
            "latency": latency.model_dump(mode="json", exclude_none=True) if latency is not None else None,
            "projected_monthly_savings": s.projected_monthly_savings, "summary": summary}


@dataclass
class HealthChange:
    """A prompt whose stored health verdict this check changed (evals.health.record_health)."""

    prompt_id: int
    prompt: str
    before: str
    after: str
    reasons: list[str] = field(default_factory=list)

    @property
    def unhealthy(self) -> bool:
        return self.after in ("degraded", "broken")


def health_event(change: HealthChange) -> dict[str, Any]:
    why = "; ".join(change.reasons) or "no reason recorded"
    return {"prompt_id": change.prompt_id, "prompt": change.prompt, "health": change.after, "before": change.before,
            "reasons": change.reasons,
            "summary": f"prompt {change.prompt!r} is {change.after} (was {change.before}): {why}"}


async def announce_health(*, engine: Engine, settings: Settings, changes: list[HealthChange]) -> None:
    """`prompt.unhealthy` for each prompt whose verdict just became degraded or broken (once per
    change: `record_health` tells exactly one checker of each change)."""
    for change in changes:
        if change.unhealthy:
            await notify(engine=engine, settings=settings, event="prompt.unhealthy", data=health_event(change))
RETIRING = "model.retiring"


def retiring_notices(session: Any, settings: Settings, *, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """(key, data) of each `model.retiring` notice due at `now`: per production prompt whose model
    retires, the tightest of `retirement_notice_days` reached (core.retirement.Retirement.notice)."""
    today = today_of(now)
    out = []
    for prompt_id, name in session.exec(select(Prompt.id, Prompt.name).order_by(col(Prompt.id))).all():
        version_id = production_version_id(session=session, prompt_id=prompt_id)
        version = session.get(PromptVersion, version_id) if version_id is not None else None
        leaving = retirement_of(settings, version.model if version is not None else None)
        threshold = leaving.notice(today, settings.retirement_notice_days) if leaving is not None else None
        if leaving is None or threshold is None:
            continue
        run = session.exec(select(OptimizationRun).where(OptimizationRun.prompt_id == prompt_id)
                           .order_by(col(OptimizationRun.id).desc())).first()
        pending = session.exec(select(Suggestion.id).where(
            Suggestion.prompt_id == prompt_id, col(Suggestion.status).in_(("pending", "approved")),
            col(Suggestion.retires_on).is_not(None)).order_by(col(Suggestion.id).desc())).first()
        migration = run.results.migration if run is not None else None
        if pending is not None:
            status = f"suggestion {pending} migrates it: review it before then"
        elif migration is not None and migration.message:
            status = migration.message
        else:
            status = "trimloop is looking for a replacement model (the prompt is due first)"
        left = leaving.days_left(today)
        data = {"prompt_id": prompt_id, "prompt": name, "model": leaving.model,
                "retires_on": leaving.retires_on.isoformat(), "days_left": left, "threshold_days": threshold,
                "source": leaving.source, "status": status,
                "summary": f"{name}: {leaving.words(today)}; {status}"}
        if run is not None:
            data["run_id"] = run.id
        if pending is not None:
            data["suggestion_id"] = pending
        out.append((f"{RETIRING}:prompt {prompt_id}:{leaving.model}:{leaving.retires_on.isoformat()}:{threshold}", data))
    return out


async def announce_retirements(*, engine: Engine, settings: Settings, now: datetime,
                               transport: httpx.AsyncBaseTransport | None = None) -> list[dict[str, Any]]:
    """Send each `model.retiring` notice due at `now` that was never sent; the data of those sent.
    Each is claimed by inserting its Notification row first (unique key): a notice two workers
    find at once is sent by the one whose insert wins. Without a webhook subscribed to the event
    nothing is recorded, so a webhook added later still gets the notices then due."""
    if not any(RETIRING in hook.events for hook in settings.webhooks):
        return []

    def claim() -> list[tuple[int, dict[str, Any], set[str] | None]]:
        claimed: list[tuple[int, dict[str, Any], set[str] | None]] = []
        with session_scope(engine) as session:
            due = retiring_notices(session, settings, now=now)
        for key, data in due:
            try:
                with session_scope(engine) as session:
                    row = session.exec(select(Notification).where(Notification.key == key)).first()
                    if row is None:
                        row = Notification(event=RETIRING, key=key, data=data, sent_at=now)
                        session.add(row)
                        session.flush()
                        claimed.append((row.id, data, None))
                    elif _retry_due(row, now):
                        # claimed by whoever moves `attempts` on first; the others' update matches no row
                        moved = session.execute(
                            update(Notification)
                            .where(col(Notification.id) == row.id, col(Notification.attempts) == row.attempts,
                                   col(Notification.delivered).is_(False))
                            .values(attempts=row.attempts + 1, sent_at=now)).rowcount
                        if moved == 1:
                            claimed.append((row.id, data, set(row.failed_hooks) or None))
            except IntegrityError:  # another worker claimed it between the read and the insert
                continue
        return claimed

    claimed = await asyncio.to_thread(claim)
    for row_id, data, only in claimed:
        deliveries = await notify(engine=engine, settings=settings, event=RETIRING, data=data, transport=transport,
                                  only=only)
        failed = sorted(d.hook for d in deliveries if not d.ok)
        await asyncio.to_thread(_mark_delivered, engine, row_id, failed)
    return [data for _, data, _ in claimed]


NOTICE_ATTEMPTS = 8  # passes that send one notice at most (8 h at the scheduler's default interval)
NOTICE_RETRY_AFTER = timedelta(minutes=5)  # a failed notice waits this long for its next pass


def _retry_due(row: Notification, now: datetime) -> bool:
    """Whether a notice that some webhook did not take should be sent again at `now`."""
    return (not row.delivered and row.attempts < NOTICE_ATTEMPTS
            and as_utc(now) - as_utc(row.sent_at) >= NOTICE_RETRY_AFTER)


def _mark_delivered(engine: Engine, row_id: int, failed: list[str]) -> None:
    """After a pass sent a notice: done when every webhook took it (or none is left to take it)."""
    with session_scope(engine) as session:
        row = session.get(Notification, row_id)
        if row is not None:
            row.delivered = not failed
            row.failed_hooks = failed
