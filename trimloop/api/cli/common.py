"""Helpers shared by the command modules: settings, a migrated database, money formatting."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from trimloop.core.db import get_engine, upgrade
from trimloop.core.settings import Settings, load_settings


def settings_and_engine() -> tuple[Settings, Engine]:
    """Settings plus an engine on a database migrated to the newest schema."""
    settings = load_settings()
    upgrade(settings.db_url)
    return settings, get_engine(settings)


def signed(value: float | None) -> str:
    """A score difference with its sign ("+0.012"), or "?" when the evidence lacks it."""
    return "?" if value is None else f"{value:+.3f}"


def money(dollars: float | None) -> str:
    if dollars is None:
        return "n/a"
    if dollars == 0:
        return "$0"
    if abs(dollars) < 0.01:
        return f"${dollars:.8f}".rstrip("0")
    return f"${dollars:,.2f}"
