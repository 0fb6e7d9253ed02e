"""`/audit`: who did what, when, before and after."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlmodel import col, select

from trimloop.api.auth import Reader, SessionDep
from trimloop.api.schemas import AuditPublic
from trimloop.core.tables import AuditEvent

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditPublic], summary="audit events, newest first")
def list_audit(session: SessionDep, _: Reader,
               object_type: str | None = Query(None, examples=["suggestion"]),
               object_id: str | None = Query(None, examples=["42"]),
               actor: str | None = None, action: str | None = Query(None, examples=["suggestion.approve"]),
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[AuditEvent]:
    query = select(AuditEvent)
    for column, value in ((AuditEvent.object_type, object_type), (AuditEvent.object_id, object_id),
                          (AuditEvent.actor, actor), (AuditEvent.action, action)):
        if value is not None:
            query = query.where(column == value)
    return list(session.exec(query.order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)).all())
