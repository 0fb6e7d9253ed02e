"""A support-triage chat prompt with production logs that carry reviewers' labels as feedback, for
the health tests: a `broken` one (answers agree with the reviewers far less often than always
saying the most common label would, and most name no label) or a healthy one."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.identity import version_identity
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, utcnow

LABELS = ["billing", "bug", "other"]
TEMPLATE = {"kind": "chat", "messages": [
    {"role": "system", "content": "Sort the support ticket into billing, bug or other."},
    {"role": "user", "content": "Ticket: {{ticket}}"}]}
MODEL = "fake/big"
PARAMS = {"temperature": 0, "max_tokens": 8}
# the gold labels: billing 41 %, bug 35 %, other 24 %
SHARES = (("billing", 0.41), ("bug", 0.35), ("other", 0.24))
OPTIONS = {"expected_from": "label", "evaluators": {"label": {"labels": LABELS}}}


def gold(rng: random.Random) -> str:
    x, total = rng.random(), 0.0
    for label, share in SHARES:
        total += share
        if x < total:
            return label
    return SHARES[-1][0]


def answer(rng: random.Random, label: str, quality: str) -> str:
    """What the prompt answered: `broken` names no label 73 % of the time and the wrong one mostly
    otherwise; `good` names the right label 92 % of the time, `meh` 62 %."""
    if quality in ("good", "meh"):  # meh: right 62 % of the time, still better than the majority's 41 %
        right = 0.92 if quality == "good" else 0.62
        return label if rng.random() < right else rng.choice([lab for lab in LABELS if lab != label])
    if rng.random() < 0.73:
        return "I am sorry, I cannot help with that ticket."
    return rng.choice([lab for lab in LABELS if lab != label]) if rng.random() < 0.93 else label


def seed_triage(engine: Engine, *, n: int = 300, quality: str = "broken", days: int = 12,
                now: datetime | None = None, name: str = "triage", seed: int = 3,
                drift: dict[str, Any] | None = None) -> int:
    """The prompt (production version) and `n` logged calls spread over the last `days` days; its id.

    `drift={"after": datetime, "quality": "broken"}` switches the answers' quality from then on."""
    rng = random.Random(seed)
    now = now or utcnow()
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=TEMPLATE, model=MODEL, params=PARAMS),
                                template=TEMPLATE, model=MODEL, params=PARAMS, connector="files",
                                external_version="1")
        session.add(version)
        session.flush()
        store.move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        start = now - timedelta(days=days)
        for i in range(n):
            at = start + (now - start) * (i + 0.5) / n
            label = gold(rng)
            kind = drift["quality"] if drift and at >= drift["after"] else quality
            session.add(LogRecord(
                connector="files", external_id=f"{name}-{i}", prompt_id=prompt.id, version_id=version.id,
                inputs={"ticket": f"ticket {i} about {label}"}, output=answer(rng, label, kind), model=MODEL,
                input_tokens=40, output_tokens=6, cost=0.0004, latency_s=0.2 + 0.1 * rng.random(), called_at=at,
                feedback=[{"name": "label", "value": label, "source": "reviewer"},
                          {"name": "thumbs", "value": kind == "good" and rng.random() < 0.9}]))
        return prompt.id  # type: ignore[return-value]
