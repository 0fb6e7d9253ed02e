"""`reasoning`: the same prompt with less hidden reasoning, which providers bill as output tokens.

For a model that takes reasoning parameters (read from litellm's model map, `core.catalog.
reasoning_params`): each lower `reasoning_effort` than the version's (OpenAI's default is medium;
`minimal` on the GPT-5 family), a lower `verbosity`, and a halved or disabled Anthropic `thinking`
budget. And the prompt on each non-reasoning model of the candidate list, without the reasoning
parameters, where the baseline's logged reasoning tokens make it dearer than that model would be.
Each candidate's `Outlook` scales the baseline's logged reasoning tokens by a rough factor per
setting, only to rank it before the race; its saving is priced on the reasoning tokens its calls
really bill against those the baseline's logs recorded.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from trimloop.core.catalog import ResolvedModel, reasoning_params
from trimloop.core.errors import ConfigError
from trimloop.core.usage import TokenUsage
from trimloop.optimizer.spec import CandidateSpec, MoveContext, Outlook

EFFORT = {"minimal": 0.0, "low": 0.25, "medium": 1.0, "high": 2.0}  # reasoning relative to medium (a guess for ranking)
VERBOSITY = {"low": 0.6, "medium": 1.0, "high": 1.5}  # visible output relative to medium (likewise)
MIN_THINKING = 1024  # Anthropic's smallest thinking budget
_TYPICAL_IN = 500


def takes(model: ResolvedModel) -> frozenset[str]:
    return reasoning_params(model.wire_model) or reasoning_params(model.id)


@dataclass(frozen=True)
class Reasoning:
    name: str = "reasoning"
    composes: bool = False  # on the prompt as it is; shorten and the others compose on top
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        version = candidate.version
        try:
            model = context.resolve(version.model)
        except ConfigError:
            return []
        params = version.params
        reasoning = statistics.fmean(f.reasoning_tokens for f in context.outputs) if context.outputs else 0.0
        output = statistics.fmean(f.output_tokens for f in context.outputs) if context.outputs else 0.0
        visible = max(0.0, output - reasoning)
        has = takes(model)
        out: list[CandidateSpec] = []

        def add(changes: dict[str, object], detail: str, outlook: Outlook) -> None:
            new = {k: v for k, v in (dict(params) | changes).items() if v is not None}
            out.append(candidate.then(version.replace(params=new), self.name, detail, outlook=outlook))

        logged = f"the baseline's logs show {reasoning:.0f} reasoning tokens per call"
        if "reasoning_effort" in has and reasoning > 0:
            levels = [lv for lv in EFFORT if lv != "minimal" or "gpt-5" in version.model]
            current = str(params.get("reasoning_effort") or "medium")
            for level in levels[:levels.index(current)] if current in levels else []:
                expect = reasoning * EFFORT[level] / max(EFFORT[current], 1e-9)
                add({"reasoning_effort": level}, f"reasoning_effort {current} → {level} ({logged})",
                    Outlook(output_tokens=visible + expect, reasoning_tokens=expect))
        thinking = params.get("thinking")
        if "thinking" in has and isinstance(thinking, dict) and thinking.get("type") == "enabled" and reasoning > 0:
            budget = int(thinking.get("budget_tokens") or 0)
            if budget // 2 >= MIN_THINKING:
                half = budget // 2
                add({"thinking": {"type": "enabled", "budget_tokens": half}}, f"thinking budget {budget} → {half} "
                    f"tokens ({logged})", Outlook(output_tokens=visible + min(reasoning, half), reasoning_tokens=min(reasoning, half)))
            add({"thinking": {"type": "disabled"}}, f"thinking off (was a {budget}-token budget; {logged})",
                Outlook(output_tokens=visible, reasoning_tokens=0.0))
        if "verbosity" in has and visible > 0:
            current = str(params.get("verbosity") or "medium")
            for level in [lv for lv in VERBOSITY if VERBOSITY[lv] < VERBOSITY.get(current, 1.0)]:
                expect = visible * VERBOSITY[level] / VERBOSITY.get(current, 1.0)
                add({"verbosity": level}, f"verbosity {current} → {level}",
                    Outlook(output_tokens=expect + reasoning, reasoning_tokens=reasoning))
        if reasoning > 0 and not context.migrate:
            base_cost = model.cost(TokenUsage(_TYPICAL_IN, round(output), reasoning=round(reasoning)))
            for model_id in context.models:
                if model_id == version.model:
                    continue
                try:
                    target = context.resolve(model_id)
                except ConfigError:
                    continue
                if takes(target) or not target.has_price or target.completion_only:
                    continue
                cost = target.cost(TokenUsage(_TYPICAL_IN, round(visible)))
                if base_cost is None or cost is None or cost >= base_cost:
                    continue
                dropped = {k: None for k in params if k in ("reasoning_effort", "verbosity", "thinking")}
                new = {k: v for k, v in (dict(params) | dropped).items() if v is not None}
                out.append(candidate.then(version.replace(model=model_id, params=new), self.name,
                                          f"{version.model} → {model_id}, a model that does not reason ({logged})",
                                          outlook=Outlook(output_tokens=visible, reasoning_tokens=0.0)))
        return out
