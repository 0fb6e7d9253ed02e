"""`/doctor`: the checks of `trimloop doctor` on the server's own settings and database."""

from __future__ import annotations

from fastapi import APIRouter, Query

from trimloop.api.auth import EngineDep, Operator, SettingsDep
from trimloop.api.doctor import DEFAULT_MAX_LOGS, diagnose
from trimloop.api.schemas import DoctorReportPublic

router = APIRouter(prefix="/doctor", tags=["doctor"])


@router.get("", response_model=DoctorReportPublic, summary="check the setup: each finding with its fix")
def doctor(settings: SettingsDep, engine: EngineDep, _: Operator,
           full: bool = Query(False, description="read every connector's logs from the start, not from the last sync"),
           max_logs: int = Query(DEFAULT_MAX_LOGS, ge=1, le=10_000_000,
                                 description="stop reading a connector's logs after this many")) -> DoctorReportPublic:
    """Config, database and migrations, allowed hosts, each connector (what it sees, what the next sync
    would store or skip and why), prices of every production and candidate model, the bundled models,
    and each prompt. Reads only: no migration, sync or LLM call. A `problem` level means not ready."""
    return DoctorReportPublic.model_validate(diagnose(settings, engine=engine, full=full, max_logs=max_logs).to_dict())
