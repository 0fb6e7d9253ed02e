"""`/connectors`: the configured stores, a connection test, and a sync with its report."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from trimloop.api.auth import EngineDep, Operator, Reader, SessionDep, SettingsDep
from trimloop.api.schemas import ConnectorPublic, ConnectorTest, SyncReportPublic, SyncRequest
from trimloop.connectors import registry
from trimloop.connectors.base import Problem
from trimloop.connectors.sync import sync
from trimloop.core import store
from trimloop.core.errors import NotFound, TrimloopError
from trimloop.core.tables import utcnow

router = APIRouter(prefix="/connectors", tags=["connectors"])


@router.get("", response_model=list[ConnectorPublic], summary="configured connectors")
def list_connectors(settings: SettingsDep, _: Reader) -> list[ConnectorPublic]:
    out = []
    for name, config in settings.connectors.items():
        try:
            read_only = registry.load(config.type).read_only
        except TrimloopError:
            read_only = True
        out.append(ConnectorPublic(name=name, type=config.type, read_only=read_only))
    return out


@router.post("/{name}/test", response_model=ConnectorTest, summary="read the store's prompts once, change nothing")
def test_connector(name: str, settings: SettingsDep, _: Operator) -> ConnectorTest:
    if name not in settings.connectors:
        raise NotFound(f"no connector named {name!r}", where="trimloop.toml [connectors]",
                       hint=f"configured: {', '.join(settings.connectors) or 'none'}")
    try:
        with registry.create(name, settings.connectors[name], egress=settings.egress) as connector:
            items = list(connector.read_prompts())
    except TrimloopError as exc:
        return ConnectorTest(name=name, ok=False, prompts=0, error=str(exc))
    problems = [str(i) for i in items if isinstance(i, Problem)]
    return ConnectorTest(name=name, ok=True, prompts=len(items) - len(problems), problems=problems[:50])


@router.post("/sync", response_model=list[SyncReportPublic], summary="pull prompts and logs now")
def sync_connectors(body: SyncRequest, settings: SettingsDep, engine: EngineDep, session: SessionDep,
                    who: Operator) -> list[SyncReportPublic]:
    reports = sync(engine=engine, settings=settings, only=body.connectors, full=body.full)
    superseded = store.supersede_stale(session=session, actor=who.actor)
    expired = store.expire_stale(session=session, now=utcnow(), actor=who.actor,
                                 max_age=timedelta(days=settings.scheduler.expire_pending_after_days))
    store.record_audit(session=session, actor=who.actor, action="connectors.sync", object_type="connector",
                       object_id=",".join(r.connector for r in reports),
                       after={"reports": [{k: v for k, v in r.to_dict().items() if k != "problems"}
                                          for r in reports], "superseded": superseded, "expired": expired})
    return [SyncReportPublic(**r.to_dict(), superseded=superseded, expired=expired) for r in reports]
