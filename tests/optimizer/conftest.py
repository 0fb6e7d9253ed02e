"""A sentiment prompt with production logs in a real store, and the real gateway over that store
with a fake provider that answers like a model: right on clear reviews."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from trimloop.core.catalog import resolve_model
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.settings import Settings
from trimloop.core.store import move_label
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, utcnow
from trimloop.testing.fake_provider import FakeProvider
from trimloop.testing.sentiment import VERBOSE, classify, prompt_text, review


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", prompts={"sentiment": {"rungs": [8, 24], "dataset_size": 200, "margin": 0.05,
                                                                    "holdout_fraction": 0.6}})


def seed_sentiment(session, settings: Settings, *, model: str, params: dict, seed: int,  # type: ignore[no-untyped-def]
                   latency_s: float, n: int = 200) -> int:
    """The `sentiment` prompt in `session`: the verbose few-shot text template on `model` labelled
    production, and `n` logged calls over the 27 days before now (right labels, priced at 160 + 1
    tokens); its id."""
    rng = random.Random(seed)
    now = utcnow()
    template = {"kind": "text", "text": VERBOSE}
    priced = resolve_model(settings, model)
    prompt = Prompt(name="sentiment", connector="files")
    session.add(prompt)
    session.flush()
    version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=template, model=model, params=params),
                            template=template, model=model, params=params, connector="files", external_version="1")
    session.add(version)
    session.flush()
    move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
    for i in range(n):
        text, label = review(rng, i)
        session.add(LogRecord(connector="files", external_id=f"log-{i}", prompt_id=prompt.id,
                              version_id=version.id, inputs={"text": text}, output=f" {label}",
                              model=model, input_tokens=160, output_tokens=1,
                              cost=priced.price(160, 1), latency_s=latency_s,
                              called_at=now - timedelta(days=27) + timedelta(hours=3 * i)))
    return prompt.id  # type: ignore[return-value]


@pytest.fixture
def seeded(engine, settings):  # type: ignore[no-untyped-def]
    """The `sentiment` prompt: a verbose few-shot Gemma version labelled production, 200 logs."""
    with session_scope(engine) as session:
        return seed_sentiment(session, settings, model="local/gemma3-270m",
                              params={"max_tokens": 3, "temperature": 0}, seed=7, latency_s=0.3)


@pytest.fixture
def good_provider() -> FakeProvider:
    """A model that classifies clear reviews right; `.calls` are the calls it answered (paid)."""
    return FakeProvider(responder=lambda model, prompt: classify(prompt_text(prompt)))


@pytest.fixture
async def gateway_for(engine, settings):  # type: ignore[no-untyped-def]
    """`gateway_for(provider)`: the real gateway (spend cap, response cache in `engine`, retries)
    answering through `provider`; closed after the test."""
    made: list[Gateway] = []

    def make(provider: FakeProvider, *, settings: Settings = settings) -> Gateway:
        made.append(Gateway(settings, engine=engine, provider=provider))
        return made[-1]

    yield make
    for gateway in made:
        await gateway.aclose()


@pytest.fixture
def good_gateway(gateway_for, good_provider):  # type: ignore[no-untyped-def]
    return gateway_for(good_provider)
