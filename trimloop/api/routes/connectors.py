"""`/connectors`: the configured stores, a connection test, and a sync with its report."""

from __future__ import annotations

from fastapi import APIRouter

from trimloop.api import services
from trimloop.api.auth import EngineDep, Operator, Reader, SettingsDep
from trimloop.api.schemas import ConnectorPublic, ConnectorTest, SyncReportPublic, SyncRequest
from trimloop.connectors import registry
from trimloop.connectors.base import Problem
from trimloop.core.errors import NotFound, TrimloopError

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
def sync_connectors(body: SyncRequest, settings: SettingsDep, engine: EngineDep, who: Operator) -> list[SyncReportPublic]:
    done = services.sync(engine=engine, settings=settings, actor=who.actor, only=body.connectors, full=body.full)
    return [SyncReportPublic(**r.to_dict(), superseded=done.superseded, expired=done.expired) for r in done.reports]
