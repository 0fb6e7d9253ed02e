"""Builders shared by the evals tests: a prompt with versions and logs in a test database, and the
real gateway with a fake provider answering the test models."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from typing import Any

from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.settings import GatewaySettings, Settings
from trimloop.core.tables import LogRecord, Prompt, PromptVersion
from trimloop.testing.fake_provider import FakeProvider, fake_model

MODELS = ("fake/model", "fake/cheap", "m", "judge", "judge-model")  # priced at $1 per 1M tokens each way

TEMPLATE = {"kind": "text", "text": "Review: {{text}}\nSentiment:"}


def add_prompt(engine, name: str = "sentiment") -> int:
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="test")
        session.add(prompt)
        session.flush()
        return prompt.id


def add_version(engine, prompt_id: int, *, template=TEMPLATE, model="fake/model", params=None,
                labels=("production",)) -> int:
    params = params or {"temperature": 0, "max_tokens": 5}
    with session_scope(engine) as session:
        version = PromptVersion(prompt_id=prompt_id, template=template, model=model, params=params,
                                sha=version_identity(template=template, model=model, params=params),
                                connector="test")
        session.add(version)
        session.flush()
        for label in labels:
            store.move_label(session=session, prompt_id=prompt_id, label=label, version_id=version.id)
        return version.id


def add_logs(engine, prompt_id: int, version_id: int, rows, *, start: int = 0) -> None:
    """rows: (text, output) pairs; each becomes a LogRecord one minute apart."""
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with session_scope(engine) as session:
        for i, (text, output) in enumerate(rows, start):
            session.add(LogRecord(connector="test", external_id=f"log-{i}", prompt_id=prompt_id,
                                  version_id=version_id, inputs={"text": text}, output=output,
                                  called_at=t0 + timedelta(minutes=i),
                                  feedback=[{"name": "thumbs", "value": 1, "source": "user"}] if i % 7 == 0 else []))


def fake_gateway(provider: FakeProvider, **gateway: Any) -> Gateway:
    """The real gateway (no response cache: these tests count the runner's own resumption), with
    `provider` answering the test models, which the catalog prices from settings."""
    return Gateway(Settings(models={m: fake_model() for m in MODELS}, gateway=GatewaySettings(**gateway)),
                   provider=provider)
