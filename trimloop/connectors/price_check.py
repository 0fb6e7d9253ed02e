"""Sync's price check: a logged cost that disagrees with its tokens × the catalog's prices.

A logged `cost` stays the truth for the baseline (it is what the team was billed). A log without a
cost but with tokens gets tokens × prices — the same cost function as projections — so spend and
realized savings count it (its meta says so: `cost_from`). A gap of more
than `TOLERANCE` usually means a wrong price setting — a custom price per 1M tokens entered per 1K,
a fine-tuned model priced as its base, a cache discount the settings do not know — and every
projection scaled from those prices would be off by as much. Gaps are reported per prompt and model.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from trimloop.connectors.base import LogItem
from trimloop.core.catalog import ResolvedModel, resolve_model
from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.core.tables import MAX_COST_PER_CALL
from trimloop.core.usage import TokenUsage

TOLERANCE = 0.05
COST_CACHE_SIZE = 100_000
# Flagged gaps kept per prompt and model for the median: a uniform sample (reservoir sampling,
# seeded), not every one. Kept whole, a sync of 10M calls whose costs all disagreed held 10M floats
# (~350 MB of the sync's 736 MB peak in bench.scale); the median of 10,000 sampled gaps is within
# about 1 % of the gaps' quantiles of the true median.
GAP_SAMPLE = 10_000


@dataclass
class PriceGap:
    """Logs of one prompt on one model whose cost is off its tokens × prices by more than 5 %."""

    prompt: str
    model: str
    checked: int = 0
    flagged: int = 0
    gaps: list[float] = field(default_factory=list)  # logged ÷ priced − 1: a sample of the flagged logs
    price_source: str = ""
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False, compare=False)
    _gaps_seen: int = field(default=0, repr=False, compare=False)

    def add_gap(self, gap: float) -> None:
        """Count a flagged log's gap into the sample (every one while fewer than GAP_SAMPLE)."""
        self.flagged += 1
        self._gaps_seen += 1
        if len(self.gaps) < GAP_SAMPLE:
            self.gaps.append(gap)
        else:
            slot = self._rng.randrange(self._gaps_seen)
            if slot < GAP_SAMPLE:
                self.gaps[slot] = gap

    @property
    def median_gap(self) -> float | None:
        """logged ÷ priced − 1 over the flagged logs; None when every one was priced at $0."""
        return statistics.median(self.gaps) if self.gaps else None

    def __str__(self) -> str:
        gap = self.median_gap
        if gap is None:
            size = "charged although tokens × price is $0"
        else:
            size = f"{abs(gap) * 100:.0f} % {'more' if gap > 0 else 'less'} than tokens × price (median)"
        return (f"{self.prompt} on {self.model}: {self.flagged} of {self.checked} logged costs are {size}; "
                f"price from {self.price_source}")

    def to_dict(self) -> dict[str, Any]:
        gap = self.median_gap
        return {"prompt": self.prompt, "model": self.model, "checked": self.checked, "flagged": self.flagged,
                "median_gap": None if gap is None else round(gap, 4), "price_source": self.price_source}


class PriceCheck:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._models: dict[str, ResolvedModel | None] = {}
        self._costs: dict[tuple[Any, ...], float | None] = {}  # (model, token classes, batch) → cost
        self.groups: dict[tuple[str, str], PriceGap] = {}

    def _model(self, name: str) -> ResolvedModel | None:
        if name not in self._models:
            try:
                resolved: ResolvedModel | None = resolve_model(self.settings, name)
            except ConfigError:
                resolved = None
            self._models[name] = resolved
        return self._models[name]

    def check(self, item: LogItem, prompt: str) -> None:
        if item.model is None or item.input_tokens is None or item.output_tokens is None:
            return
        model = self._model(item.model)
        if model is None:
            return
        key = (item.model, item.input_tokens, item.output_tokens, item.cached_input_tokens, item.cache_write_tokens,
               item.reasoning_tokens, item.batch)
        if key in self._costs:  # calls repeat their token counts: price each combination once
            priced = self._costs[key]
        else:
            priced = model.cost(TokenUsage(item.input_tokens, item.output_tokens, item.cached_input_tokens,
                                           item.cache_write_tokens, item.reasoning_tokens, item.batch))
            if len(self._costs) >= COST_CACHE_SIZE:
                self._costs.clear()
            self._costs[key] = priced
        if priced is None:
            return
        if item.cost is None:
            if priced <= MAX_COST_PER_CALL:
                item.cost = priced
                # a word, not the price's source (~60 bytes on every such record): `trimloop models` shows it
                item.meta = {**item.meta, "cost_from": "tokens"}
            return
        group = self.groups.get((prompt, item.model))
        if group is None:
            group = self.groups[prompt, item.model] = PriceGap(prompt, item.model, price_source=model.price_source)
        group.checked += 1
        if priced <= 0:
            if item.cost > 0:  # a $0 price for a call that was billed: no finite gap to report
                group.flagged += 1
            return
        gap = item.cost / priced - 1
        if abs(gap) > TOLERANCE:
            group.add_gap(gap)

    def flagged(self) -> list[PriceGap]:
        return sorted((g for g in self.groups.values() if g.flagged), key=lambda g: (-g.flagged, g.prompt, g.model))
