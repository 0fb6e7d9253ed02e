"""Connectors: read prompt versions and call logs from a team's stores, write approved versions back.

`sync(engine=..., settings=...)` pulls every configured connector into the store; `registry`
finds connector types (built-ins and the `trimloop.connectors` entry-point group).
"""

from trimloop.connectors.base import (
    Checkpoint,
    Connector,
    LogItem,
    Looked,
    Problem,
    PromptItem,
    WriteResult,
)
from trimloop.connectors.sync import SyncReport, sync, sync_connector

__all__ = [
    "Checkpoint",
    "Connector",
    "LogItem",
    "Looked",
    "Problem",
    "PromptItem",
    "SyncReport",
    "WriteResult",
    "sync",
    "sync_connector",
]
