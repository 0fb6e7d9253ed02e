"""Store functions the API calls: tokens, audit, runs and the suggestion lifecycle.

Every function takes keyword-only arguments and a session it does not commit (the caller's unit
of work does). State changes are conditional UPDATEs (`WHERE status IN (...)`), so two concurrent
requests cannot both move one suggestion or run, on SQLite and on PostgreSQL alike; the loser
sees the new state and gets `Conflict`, or the same answer again when it asked for that state
(approve, deploy and promote are idempotent). Every change writes an AuditEvent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from trimloop.core.errors import Conflict, NotFound, UserError
from trimloop.core.status import (
    OPEN_SUGGESTION,
    RUN_ACTIVE,
    RUN_DONE,
    RunStatus,
    SuggestionKind,
    SuggestionStatus,
    illegal,
    sources,
)
from trimloop.core.redact import redact_urls
from trimloop.core.tables import (
    ApiToken,
    AuditEvent,
    Deployment,
    OptimizationRun,
    Prompt,
    PromptLabel,
    PromptVersion,
    Review,
    Suggestion,
    as_utc,
    utcnow,
)

ROLES = ("viewer", "reviewer", "engineer", "admin", "ingest")
TOKEN_PREFIX = "tlk"
PBKDF2_ITERATIONS = 60_000  # the hash of tokens made before migration 0007, checked once each
MAX_TOKEN_DAYS = 3650
__all__ = ["OPEN_SUGGESTION", "RUN_ACTIVE", "RUN_DONE"]  # with the functions below; statuses: core.status
S = SuggestionStatus


# -- audit ----------------------------------------------------------------------------------
def record_audit(*, session: Session, actor: str, action: str, object_type: str,
                 object_id: Any = None, before: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None) -> AuditEvent:
    """One line of who did what, when, before and after. Every viewer reads the audit log, so
    URLs in its text lose their user info and query (core.redact), whatever recorded them."""
    event = AuditEvent(actor=actor, action=action, object_type=object_type,
                       object_id=None if object_id is None else redact_urls(str(object_id)),
                       before=_redacted(before), after=_redacted(after))
    session.add(event)
    session.flush()
    return event


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


# -- tokens -----------------------------------------------------------------------------------
def token_digest(token: str) -> str:
    """What is stored of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _pbkdf2(secret: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), PBKDF2_ITERATIONS).hex()


def create_token(*, session: Session, name: str, role: str, actor: str,
                 expires_in_days: float | None = None) -> tuple[ApiToken, str]:
    """A new token; returns the row and the clear token, which is never stored or shown again.
    With `expires_in_days` it stops working that long from now (401, like a revoked one)."""
    if expires_in_days is not None and not 0 < expires_in_days <= MAX_TOKEN_DAYS:
        raise UserError(f"a token's lifetime must be more than 0 and at most {MAX_TOKEN_DAYS} days, got "
                        f"{expires_in_days:g}", where="token expires_in_days",
                        hint="e.g. --expires-days 90; leave it out for a token that lasts until revoked")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}", where="token role",
                        hint=f"use one of {', '.join(ROLES)}")
    name = check_token_name(name)
    prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
    clear = f"{TOKEN_PREFIX}_{prefix}_{secret}"
    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    token = ApiToken(name=name.strip(), role=role, prefix=prefix, digest=token_digest(clear), expires_at=expires)
    session.add(token)
    session.flush()
    record_audit(session=session, actor=actor, action="token.create", object_type="token",
                 object_id=token.id, after={"name": token.name, "role": role, "prefix": prefix,
                                            "expires_at": expires.isoformat() if expires else None})
    return token, clear


def check_token_name(name: str) -> str:
    """The name, stripped. Names show in the audit log, token lists and terminals, so control and
    formatting characters (NUL, line breaks, right-to-left overrides) are refused: they could
    forge or hide lines there."""
    text = name.strip()
    if not text:
        raise UserError("a token needs a name", where="token name", hint="e.g. --name ci-bot")
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise UserError(f"a token name may not contain control or formatting characters; found "
                        f"U+{ord(bad):04X} ({unicodedata.name(bad, 'a control character')}) at character "
                        f"{text.index(bad) + 1}", where="token name",
                        hint="use letters, digits, spaces and punctuation, e.g. --name ci-bot")
    if len(text) > 200:
        raise UserError(f"a token name is at most 200 characters, got {len(text)}", where="token name",
                        hint="use a short name for who or what uses it, e.g. --name ci-bot")
    return text



def verify_token(*, session: Session, token: str) -> ApiToken | None:
    """The live token row for a clear token, or None (malformed, unknown, wrong, revoked, expired):
    one lookup of its SHA-256 under the unique index."""
    digest = token_digest(token)
    row = session.exec(select(ApiToken).where(ApiToken.digest == digest)).first()
    if row is None:
        row = _upgrade_legacy(session, token, digest)
    return row if row is not None and row.live() else None


def _upgrade_legacy(session: Session, token: str, digest: str) -> ApiToken | None:
    """A live token made before migration 0007 (PBKDF2, found by its prefix): checked once, then it
    gets its digest and loses the PBKDF2 hash, in the caller's transaction."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    _, prefix, secret = parts
    for row in session.exec(select(ApiToken).where(ApiToken.prefix == prefix, col(ApiToken.digest).is_(None))).all():
        if row.live() and row.salt and row.token_hash and hmac.compare_digest(_pbkdf2(secret, row.salt),
                                                                              row.token_hash):
            row.digest, row.salt, row.token_hash = digest, None, None
            session.add(row)
            session.flush()
            return row
    return None


def list_tokens(*, session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def revoke_token(*, session: Session, token_id: int, actor: str) -> ApiToken:
    """Revoke a token (idempotent)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no token with id {token_id}", where="tokens", hint="list them: GET /tokens")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        record_audit(session=session, actor=actor, action="token.revoke", object_type="token",
                     object_id=token_id, before={"revoked": False}, after={"revoked": True})
    return token


# -- runs -------------------------------------------------------------------------------------
def check_prompt(*, session: Session, prompt_id: int) -> Prompt:
    """The prompt, or NotFound naming the field (runs and imports refer to it by id)."""
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="prompt_id",
                       hint="list prompts with GET /prompts, or sync a connector first")
    return prompt


def get_run(*, session: Session, run_id: int) -> OptimizationRun:
    run = session.get(OptimizationRun, run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}", where="runs", hint="list runs: GET /runs")
    return run


def cancel_run(*, session: Session, run_id: int, actor: str) -> OptimizationRun:
    """Mark a queued or running run `cancelled`; the runner stops at its next step. Idempotent."""
    run = get_run(session=session, run_id=run_id)
    before = run.status
    done = session.execute(update(OptimizationRun).where(
        OptimizationRun.id == run_id, col(OptimizationRun.status).in_(sources(RunStatus.cancelled))).values(
        status=RunStatus.cancelled, finished_at=utcnow()))
    session.refresh(run)
    if done.rowcount == 1:  # type: ignore[attr-defined]
        record_audit(session=session, actor=actor, action="run.cancel", object_type="run",
                     object_id=run_id, before={"status": before}, after={"status": RunStatus.cancelled.value})
    elif run.status != RunStatus.cancelled:
        raise illegal(f"run {run_id}", run.status, RunStatus.cancelled,
                      hint="only queued or running runs can be cancelled")
    return run


# -- suggestions ------------------------------------------------------------------------------
def get_suggestion(*, session: Session, suggestion_id: int) -> Suggestion:
    suggestion = session.get(Suggestion, suggestion_id)
    if suggestion is None:
        raise NotFound(f"no suggestion with id {suggestion_id}", where="suggestions",
                       hint="list them: GET /suggestions?status=pending")
    return suggestion


def list_suggestions(*, session: Session, status: str | None = None, prompt_id: int | None = None,
                     min_savings: float | None = None, kind: str | None = None, limit: int = 100,
                     offset: int = 0) -> list[Suggestion]:
    query = select(Suggestion)
    if status:
        query = query.where(Suggestion.status == status)
    if kind:
        query = query.where(Suggestion.kind == kind)
    if prompt_id is not None:
        query = query.where(Suggestion.prompt_id == prompt_id)
    if min_savings is not None:
        query = query.where(col(Suggestion.projected_monthly_savings) >= min_savings)
    # migrations off a retiring model first, the nearest date first; then repairs; then the biggest savings
    query = query.order_by(col(Suggestion.retires_on).asc().nulls_last(),
                           case((col(Suggestion.kind) == SuggestionKind.repair.value, 0), else_=1),
                           col(Suggestion.projected_monthly_savings).desc(), col(Suggestion.id).desc())
    return list(session.exec(query.offset(offset).limit(limit)).all())


# -- labels ---------------------------------------------------------------------------------------
# A label sits on one version of its prompt (a PromptLabel row, unique per prompt and label). Sync,
# deploy, promote and rollback move labels only through `move_label`; everything that needs "the
# production version" asks `production_version_id`. Both take a Session or a Connection (sync
# writes through a Connection).
PRODUCTION, STAGING = "production", "staging"


def production_version_id(*, session: Session | Connection, prompt_id: int,
                          label: str = PRODUCTION) -> int | None:
    """The id of the version the prompt's `label` (default `production`) sits on, if any."""
    return session.execute(select(PromptLabel.version_id).where(  # type: ignore[call-overload]
        PromptLabel.prompt_id == prompt_id, PromptLabel.label == label)).scalar()


def prompt_labels(*, session: Session | Connection, prompt_id: int) -> dict[str, int]:
    """Every label of the prompt → the id of the version it sits on."""
    rows = session.execute(select(PromptLabel.label, PromptLabel.version_id).where(  # type: ignore[call-overload]
        PromptLabel.prompt_id == prompt_id))
    return {label: vid for label, vid in rows.all()}


def version_labels(*, session: Session | Connection, version_ids: Iterable[int]) -> dict[int, list[str]]:
    """The labels sitting on each of the versions (sorted; [] for a version without any)."""
    ids = sorted(set(version_ids))
    found: dict[int, list[str]] = {vid: [] for vid in ids}
    if ids:
        rows = session.execute(select(PromptLabel.version_id, PromptLabel.label).where(  # type: ignore[call-overload]
            col(PromptLabel.version_id).in_(ids)).order_by(col(PromptLabel.label)))
        for vid, label in rows.all():
            found[vid].append(label)
    return found


def move_label(*, session: Session | Connection, prompt_id: int, label: str, version_id: int | None) -> int | None:
    """Put the prompt's `label` on `version_id` (None: take it off the prompt); the id of the
    version it sat on before (None: nowhere). An upsert on (prompt, label), so a concurrent move
    of the same label cannot fail on the unique constraint: the later one wins."""
    if isinstance(session, Session):
        session.flush()  # the version may have been added in this unit of work
    before = production_version_id(session=session, prompt_id=prompt_id, label=label)
    if before == version_id:
        return before
    table = PromptLabel.__table__
    if version_id is None:
        session.execute(table.delete().where(table.c.prompt_id == prompt_id, table.c.label == label))
        return before
    dialect = (session.get_bind() if isinstance(session, Session) else session).dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).values(prompt_id=prompt_id, label=label, version_id=version_id, moved_at=utcnow())
    session.execute(statement.on_conflict_do_update(
        index_elements=["prompt_id", "label"],
        set_={"version_id": statement.excluded.version_id, "moved_at": statement.excluded.moved_at}))
    return before


def _move(session: Session, suggestion: Suggestion, *, to: SuggestionStatus,
          actor: str, action: str, **values: Any) -> bool:
    """Conditionally move the status along core.status's table; True when this call made the change."""
    before = suggestion.status
    done = session.execute(update(Suggestion).where(
        Suggestion.id == suggestion.id, col(Suggestion.status).in_(sources(to))).values(status=to, **values))
    session.refresh(suggestion)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    record_audit(session=session, actor=actor, action=action, object_type="suggestion",
                 object_id=suggestion.id, before={"status": str(before)},
                 after={"status": to.value, **{k: v for k, v in values.items() if k == "reason"}})
    return True


def supersede_stale(*, session: Session, prompt_id: int | None = None, actor: str = "system") -> list[int]:
    """Mark open suggestions whose baseline is no longer production `superseded`; their ids."""
    query = select(Suggestion).where(col(Suggestion.status).in_(OPEN_SUGGESTION))
    if prompt_id is not None:
        query = query.where(Suggestion.prompt_id == prompt_id)
    production: dict[int, int | None] = {}
    changed = []
    for suggestion in session.exec(query).all():
        pid = suggestion.prompt_id
        if pid not in production:
            production[pid] = production_version_id(session=session, prompt_id=pid)
        if production[pid] is not None and production[pid] != suggestion.baseline_version_id:
            if _move(session, suggestion, to=S.superseded, actor=actor,
                     action="suggestion.supersede", decided_at=utcnow()):
                changed.append(suggestion.id)
    return changed


def expire_stale(*, session: Session, now: datetime, max_age: timedelta, prompt_id: int | None = None,
                 actor: str = "system") -> list[int]:
    """Mark pending suggestions made more than `max_age` before `now` `expired`; their ids.

    Nobody decided in time, and what the suggestion says has gone stale: its savings were
    projected from traffic and prices of that time, and its candidate was chosen among the models
    available then. While it is pending the scheduler starts no new run for the prompt; once it
    expires the prompt can be optimized again against today's traffic. Approved suggestions are
    left alone: a person has decided, and deploying is the next step.
    """
    cutoff = now - max_age
    query = select(Suggestion).where(Suggestion.status == S.pending, col(Suggestion.created_at) < cutoff)
    if prompt_id is not None:
        query = query.where(Suggestion.prompt_id == prompt_id)
    days = max_age.total_seconds() / 86400
    changed = []
    for suggestion in session.exec(query.order_by(col(Suggestion.id))).all():
        if _move(session, suggestion, to=S.expired, actor=actor, action="suggestion.expire",
                 decided_at=now, reason=f"pending for more than {days:g} days without a decision"):
            changed.append(suggestion.id)
    return changed


class Superseded(Conflict):
    """The suggestion's baseline is no longer production; the caller commits the new status."""

    code = "superseded"


def _check_baseline(session: Session, suggestion: Suggestion, actor: str) -> None:
    if suggestion.id in supersede_stale(session=session, prompt_id=suggestion.prompt_id, actor=actor):
        raise Superseded(
            f"suggestion {suggestion.id} is superseded: its baseline is no longer the production version",
            where=f"suggestion {suggestion.id}",
            hint="run a new optimization for this prompt against the current production version")


def _refuse(suggestion: Suggestion, to: SuggestionStatus) -> Conflict:
    return illegal(f"suggestion {suggestion.id}", suggestion.status, to,
                   hint="reload it: someone else may have decided first (GET /suggestions/{id})")


def _decision(session: Session, suggestion_id: int) -> Review | None:
    return session.exec(select(Review).where(Review.suggestion_id == suggestion_id)
                        .order_by(col(Review.id).desc())).first()


def approve_suggestion(*, session: Session, suggestion_id: int, reviewer: str) -> Suggestion:
    """pending → approved. Repeating one's own approval is a no-op; anyone else's is a Conflict."""
    suggestion = get_suggestion(session=session, suggestion_id=suggestion_id)
    if suggestion.status == S.pending:
        _check_baseline(session, suggestion, reviewer)
    if _move(session, suggestion, to=S.approved, actor=reviewer,
             action="suggestion.approve", decided_at=utcnow()):
        session.add(Review(suggestion_id=suggestion_id, reviewer=reviewer, decision="approved"))
        session.flush()
        return suggestion
    last = _decision(session, suggestion_id)
    if suggestion.status in (S.approved, S.deployed) and last and last.reviewer == reviewer \
            and last.decision == "approved":
        return suggestion
    raise _refuse(suggestion, S.approved)


def reject_suggestion(*, session: Session, suggestion_id: int, reviewer: str, reason: str) -> Suggestion:
    """pending or approved → rejected, with a reason (required). Idempotent for the same reviewer."""
    if not reason or not reason.strip():
        raise UserError("a rejection needs a reason", where="reason",
                        hint="say what is wrong, e.g. 'outputs lose the ticket id'")
    suggestion = get_suggestion(session=session, suggestion_id=suggestion_id)
    if _move(session, suggestion, to=S.rejected, actor=reviewer,
             action="suggestion.reject", decided_at=utcnow(), reason=reason.strip()):
        session.add(Review(suggestion_id=suggestion_id, reviewer=reviewer, decision="rejected",
                           reason=reason.strip()))
        session.flush()
        return suggestion
    last = _decision(session, suggestion_id)
    if suggestion.status == S.rejected and last and last.reviewer == reviewer:
        return suggestion
    raise _refuse(suggestion, S.rejected)


@dataclass
class DeployPlan:
    """What the API must write through the connector for a deploy, promote or rollback."""

    suggestion: Suggestion
    prompt: Prompt
    version: PromptVersion  # the version to write or to point the label at
    done: Deployment | None  # set when the step already happened (idempotent repeat)


def _latest_deployment(session: Session, suggestion_id: int, action: str) -> Deployment | None:
    return session.exec(select(Deployment).where(
        Deployment.suggestion_id == suggestion_id, Deployment.action == action,
        Deployment.status == "done").order_by(col(Deployment.id).desc())).first()


def plan_deploy(*, session: Session, suggestion_id: int, actor: str) -> DeployPlan:
    """Check a deploy may happen (approved, baseline still production) and what to write."""
    suggestion = get_suggestion(session=session, suggestion_id=suggestion_id)
    if suggestion.status in BUSY:  # claim_write says who holds it (or releases a stale claim)
        return _plan(session, suggestion, suggestion.candidate_version_id, None)
    done = _latest_deployment(session, suggestion_id, "deploy")
    if suggestion.status == S.deployed and done:
        return _plan(session, suggestion, suggestion.candidate_version_id, done)
    if suggestion.status != S.approved:
        raise illegal(f"suggestion {suggestion_id}", suggestion.status, S.deployed,
                      hint="only approved ones deploy: approve it first (POST .../approve)")
    _check_baseline(session, suggestion, actor)
    return _plan(session, suggestion, suggestion.candidate_version_id, None)


def _plan(session: Session, suggestion: Suggestion, version_id: int, done: Deployment | None) -> DeployPlan:
    prompt = session.get(Prompt, suggestion.prompt_id)
    version = session.get(PromptVersion, version_id)
    assert prompt is not None and version is not None  # foreign keys
    return DeployPlan(suggestion, prompt, version, done)


# -- write-back claims --------------------------------------------------------------------------
# A deploy, promote or rollback first claims the suggestion with a conditional UPDATE from the
# status the step starts at to a "busy" status, and commits that before the connector is touched:
# of concurrent requests exactly one wins and writes, the others get Conflict. The claim carries a
# Deployment row with status `writing` (its time tells a stale claim from a live one); the
# winner's result or failure settles both.
CLAIMS: dict[str, tuple[str, str, str]] = {  # action → (starts at, busy while writing, ends at)
    "deploy": ("approved", "deploying", "deployed"),
    "promote": ("deployed", "promoting", "deployed"),
    "rollback": ("deployed", "rolling_back", "rolled_back"),
}
BUSY = {busy: action for action, (_, busy, _) in CLAIMS.items()}
STALE_CLAIM = timedelta(minutes=15)  # far beyond a connector's timeouts: its writer has died


class ClaimReleased(Conflict):
    """A stale claim was released instead of claiming; the caller commits that and says retry."""


def claim_write(*, session: Session, plan: DeployPlan, action: str, label: str, actor: str) -> Deployment:
    """Claim the suggestion for one write-back through its connector; Conflict when another
    request holds it (or the status moved on). The caller commits the claim before writing."""
    start, busy, _ = CLAIMS[action]
    suggestion = plan.suggestion
    won = session.execute(update(Suggestion).where(
        Suggestion.id == suggestion.id, Suggestion.status == start).values(status=busy))
    session.refresh(suggestion)
    if won.rowcount == 1:  # type: ignore[attr-defined]
        claim = Deployment(suggestion_id=suggestion.id, connector=plan.prompt.connector, label=label,
                           action=action, status="writing", actor=actor)
        session.add(claim)
        session.flush()
        return claim
    stale = BUSY.get(suggestion.status)
    if stale is not None and _release_stale(session, suggestion):
        raise ClaimReleased(f"an earlier {stale} of suggestion {suggestion.id} never finished (its "
                       "writer stopped); its claim is now released", where=f"suggestion {suggestion.id}",
                       hint="check the prompt store, reload the suggestion and repeat the step")
    if suggestion.status in BUSY:
        raise Conflict(f"suggestion {suggestion.id} is being written to its prompt store by another request "
                       f"({BUSY[suggestion.status]})", where=f"suggestion {suggestion.id}",
                       hint="wait a few seconds and reload it (GET /suggestions/{id}); repeat the step "
                       "only if it failed")
    raise _refuse(suggestion, SuggestionStatus(busy))


def _release_stale(session: Session, suggestion: Suggestion) -> bool:
    """Release a claim whose writer has been silent for STALE_CLAIM (its process died); True when
    this call released it. Abandoning its `writing` row is conditional, so one caller wins."""
    cutoff = utcnow() - STALE_CLAIM
    writing = session.exec(select(Deployment).where(
        Deployment.suggestion_id == suggestion.id, Deployment.status == "writing")).all()
    if any(as_utc(row.created_at) >= cutoff for row in writing):
        return False
    for row in writing:
        session.execute(update(Deployment).where(Deployment.id == row.id, Deployment.status == "writing")
                        .values(status="abandoned", error="its writer stopped before finishing"))
    start = CLAIMS[BUSY[suggestion.status]][0]
    done = session.execute(update(Suggestion).where(
        Suggestion.id == suggestion.id, Suggestion.status == suggestion.status).values(status=start))
    session.refresh(suggestion)
    return done.rowcount == 1  # type: ignore[attr-defined]


def release_claim(*, session: Session, claim: Deployment, error: str) -> None:
    """The write failed: the step can be tried again; the claim row keeps the (redacted) reason."""
    start, busy, _ = CLAIMS[claim.action]
    session.execute(update(Deployment).where(Deployment.id == claim.id, Deployment.status == "writing")
                    .values(status="failed", error=error[:2000]))
    session.execute(update(Suggestion).where(Suggestion.id == claim.suggestion_id, Suggestion.status == busy)
                    .values(status=start))
    record_audit(session=session, actor=claim.actor, action=f"suggestion.{claim.action}_failed",
                 object_type="suggestion", object_id=claim.suggestion_id, after={"error": error[:500]})


def record_deployment(*, session: Session, plan: DeployPlan, claim: Deployment, external_version: str,
                      external_id: str | None = None) -> Deployment:
    """After a successful write-back: the claim becomes the Deployment, labels, status and audit."""
    suggestion, version, action, label, actor = plan.suggestion, plan.version, claim.action, claim.label, claim.actor
    start, busy, end = CLAIMS[action]
    if action == "deploy":
        version.external_version = external_version
        version.external_id = external_id or version.external_id
        version.connector = plan.prompt.connector
        session.add(version)
    move_label(session=session, prompt_id=plan.prompt.id, label=label, version_id=version.id)  # type: ignore[arg-type]
    claim.status, claim.external_version = "done", external_version
    session.add(claim)
    session.flush()
    session.execute(update(Suggestion).where(Suggestion.id == suggestion.id, Suggestion.status == busy)
                    .values(status=end))
    session.refresh(suggestion)
    if start != end:
        record_audit(session=session, actor=actor, action=f"suggestion.{action}", object_type="suggestion",
                     object_id=suggestion.id, before={"status": start}, after={"status": end})
    else:
        record_audit(session=session, actor=actor, action=f"suggestion.{action}", object_type="suggestion",
                     object_id=suggestion.id, after={"label": label, "external_version": external_version})
    if action == "promote":
        supersede_stale(session=session, prompt_id=plan.prompt.id, actor=actor)
    return claim


def plan_promote(*, session: Session, suggestion_id: int) -> DeployPlan:
    """Check a promote may happen (deployed to staging) and what to point `production` at."""
    suggestion = get_suggestion(session=session, suggestion_id=suggestion_id)
    if suggestion.status in BUSY:
        return _plan(session, suggestion, suggestion.candidate_version_id, None)
    deployed = _latest_deployment(session, suggestion_id, "deploy")
    if suggestion.status != S.deployed or deployed is None:
        raise Conflict(f"suggestion {suggestion_id} is {suggestion.status}; promote needs a deployed one",
                       where=f"suggestion {suggestion_id}", hint="deploy it to staging first (POST .../deploy)")
    done = _latest_deployment(session, suggestion_id, "promote")
    live = production_version_id(session=session, prompt_id=suggestion.prompt_id)
    return _plan(session, suggestion, suggestion.candidate_version_id,
                 done if done and live == suggestion.candidate_version_id else None)


def plan_rollback(*, session: Session, suggestion_id: int) -> DeployPlan:
    """Check a rollback may happen and which version (the baseline) gets `production` back."""
    suggestion = get_suggestion(session=session, suggestion_id=suggestion_id)
    if suggestion.status in BUSY:
        return _plan(session, suggestion, suggestion.baseline_version_id, None)
    done = _latest_deployment(session, suggestion_id, "rollback")
    if suggestion.status == S.rolled_back and done:
        return _plan(session, suggestion, suggestion.baseline_version_id, done)
    if suggestion.status != S.deployed:
        raise illegal(f"suggestion {suggestion_id}", suggestion.status, S.rolled_back,
                      hint="only deployed ones roll back; there is nothing to undo")
    return _plan(session, suggestion, suggestion.baseline_version_id, None)
