"""`/health`: the one endpoint that answers without a token. It touches no database and runs on
the event loop (no worker thread, no turn), so it answers while every turn is taken."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from trimloop.api.schemas import Health

router = APIRouter(tags=["health"])


@cache
def _version() -> str:
    try:
        return version("trimloop")
    except PackageNotFoundError:
        return "unknown"


_version()  # read the package metadata now, not on the event loop of the first request


@router.get("/health", response_model=Health, summary="liveness (no token needed)")
async def health() -> Health:
    return Health(version=_version())
