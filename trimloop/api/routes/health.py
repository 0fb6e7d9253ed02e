"""`/health`: the one endpoint that answers without a token."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from trimloop.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="liveness (no token needed)")
def health() -> Health:
    try:
        current = version("trimloop")
    except PackageNotFoundError:
        current = "unknown"
    return Health(version=current)
