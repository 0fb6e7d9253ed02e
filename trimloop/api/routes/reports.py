"""`/reports/savings`: spend, projected and realized savings; JSON or CSV."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from trimloop.api.auth import Reader, SessionDep
from trimloop.api.reporting import as_csv, savings_report
from trimloop.api.schemas import SavingsReport

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/savings", response_model=SavingsReport, summary="spend, projected and realized savings",
            responses={200: {"content": {"text/csv": {"example": "section,day,prompt,...\n"}}}})
def savings(session: SessionDep, _: Reader, days: int = Query(30, ge=1, le=3650, description="spend window: the last `days` UTC days, today included"),
            format: Literal["json", "csv"] = Query("json", description="csv: one table for spreadsheets")
            ) -> SavingsReport | Response:
    report = savings_report(session, days)
    if format == "csv":
        return Response(as_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="trimloop-savings.csv"'})
    return report
