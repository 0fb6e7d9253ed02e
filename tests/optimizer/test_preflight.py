"""The preflight names the real cause before any spending: a run that cannot succeed ends `blocked`
with the root cause first and its fix, and the fake provider behind the real gateway is never called."""

from __future__ import annotations

import math
import random
import tomllib
from datetime import timedelta
from typing import Any

from sqlmodel import select

from trimloop.core import store
from trimloop.core.catalog import resolve_model
from trimloop.core.db import session_scope
from trimloop.core.identity import version_identity
from trimloop.core.settings import Settings
from trimloop.core.status import RUN_DONE, RunStatus, allowed
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, RunEvent, Suggestion, utcnow
from trimloop.evals.report import compare_results
from trimloop.evals.runner import ItemResult
from trimloop.evals.stats import items_needed
from trimloop.optimizer.preflight import check_prompt, fewest_for_superiority, fewest_items, problems, resolver
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider, fake_model
from trimloop.testing.sentiment import VERBOSE, classify, prompt_text, review

SELF_HOSTED = "acme-selfhosted-8b"  # in no price map, and not configured
# Distinct inputs enough for the default margin 0.02: 192 holdout items at holdout_fraction 0.6, and a
# candidate that never disagrees is shown within 0.02 from 189 on at α 0.05 / 2 arms tested
# (certify_top = 2; 133 at the full α, so 300 inputs were enough before the preflight planned at α / 2).
ENOUGH = 320


def seed_prompt(engine: Any, settings: Settings, *, name: str, model: str, distinct: int, calls: int | None = None,
                cost: Any = "catalog", feedback: list[dict[str, Any]] | None = None) -> int:
    """A prompt on `model` labelled production, with `calls` logs over `distinct` different inputs;
    `cost` per log: the catalog's price ("catalog"), None (not logged) or a number."""
    rng = random.Random(3)
    template = {"kind": "text", "text": VERBOSE}
    params = {"max_tokens": 3, "temperature": 0}
    texts = [review(rng, i) for i in range(distinct)]
    now = utcnow()
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="files")
        session.add(prompt)
        session.flush()
        sha = version_identity(template=template, model=model, params=params)
        version = PromptVersion(prompt_id=prompt.id, sha=sha, template=template, model=model, params=params,
                                connector="files", external_version="1")
        session.add(version)
        session.flush()
        store.move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for i in range(calls or distinct):
            text, label = texts[i % distinct]
            price = resolve_model(settings, model).price(160, 1) if cost == "catalog" else cost
            session.add(LogRecord(connector="files", external_id=f"{name}-{i}", prompt_id=prompt.id,
                                  version_id=version.id, inputs={"text": text}, output=f" {label}", model=model,
                                  input_tokens=160, output_tokens=1, cost=price, latency_s=0.3,
                                  feedback=[dict(f, value=f.get("value", label)) for f in feedback or []],
                                  called_at=now - timedelta(days=20) + timedelta(hours=i)))
        return prompt.id  # type: ignore[return-value]


async def run_it(engine: Any, settings: Settings, prompt_id: int, gateway: Any, **config: Any) -> Any:
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config=config).id
    return await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)


def quiet_provider() -> FakeProvider:
    return FakeProvider(responder=lambda model, prompt: classify(prompt_text(prompt)))


def findings_of(engine: Any, settings: Settings, prompt_id: int, **overrides: Any) -> dict[str, Any]:
    with session_scope(engine) as session:
        return {f.code: f for f in check_prompt(session, settings=settings, prompt_id=prompt_id, overrides=overrides)}


async def test_an_unpriced_model_blocks_the_run_before_any_call_and_says_how_to_price_it(engine, settings,
                                                                                        gateway_for):
    prompt_id = seed_prompt(engine, settings, name="support-bot", model=SELF_HOSTED, distinct=ENOUGH, cost=None)
    provider = quiet_provider()
    run = await run_it(engine, settings, prompt_id, gateway_for(provider))

    assert run.status == RunStatus.blocked and run.finished_at is not None
    assert provider.attempts == 0 and provider.calls == []  # not one call reached the provider
    assert run.calls_made == 0 and run.spent_dollars == 0
    assert run.error.startswith(f"blocked before any spending: the price of {SELF_HOSTED} is unknown")
    [root] = run.results.problems()  # the root cause, and only it: the data and candidates are fine
    assert root.code == "baseline_price_unknown" and "its logs carry no cost" in root.message
    assert run.results.findings[0] == root  # root cause first
    assert f'[models."{SELF_HOSTED}"]\ninput_per_mtok = …\noutput_per_mtok = …' in root.fix
    assert run.results.outcome(run.status, run.error).startswith(f"blocked: the price of {SELF_HOSTED} is unknown")
    with session_scope(engine) as session:
        kinds = [e.kind for e in session.exec(select(RunEvent).where(RunEvent.run_id == run.id))]
    assert kinds[-2:] == ["run.preflight", "run.blocked"]

    # The fix, with numbers filled in, is valid configuration that clears the problem.
    toml = root.fix[root.fix.index("[models."):].replace("…", "0.2")
    priced = Settings(home=settings.home, models=tomllib.loads(toml)["models"])
    assert problems(list(findings_of(engine, priced, prompt_id).values())) == []


async def test_six_distinct_inputs_say_how_many_the_power_helper_needs(engine, settings, gateway_for):
    prompt_id = seed_prompt(engine, settings, name="six", model="local/gemma3-270m", distinct=6, calls=31)
    provider = quiet_provider()
    run = await run_it(engine, settings, prompt_id, gateway_for(provider))

    assert run.status == "blocked" and provider.attempts == 0 and run.calls_made == 0
    [root] = run.results.problems()
    # The power helper's plan at the level each arm is tested at: α 0.05 / certify_top 2 (549 items; 425 at α).
    wanted = items_needed(margin=0.02, discordance=0.02, alpha=0.025, power=0.8)
    assert root.code == "too_few_inputs" and root.message.startswith("6 distinct inputs among 31 logged calls (4 in the holdout")
    assert f"the power helper plans at least {wanted} holdout items at margin 0.02 and α 0.025 " \
        "(0.05 / 2 candidates tested)" \
        in root.message
    floor = fewest_items(0.02, 0.025)  # even a perfect candidate needs it (189; 133 at α)
    assert f"needs {floor} holdout items at α 0.025 (0.05 / 2 candidates tested)" in root.message
    assert root.data["distinct_inputs"] == 6 and root.data["holdout_needed"] == wanted
    assert root.data["distinct_inputs_needed"] == math.ceil(wanted / 0.6) == 915  # 915 × 0.6 = 549 in the holdout
    support = root.data["supported_margin"]
    assert 0.3 < support < 0.6 and f"the most these items can support at that level is margin {support:g}" \
        in root.message
    assert items_needed(margin=support, discordance=0.02, alpha=0.025) <= 4 \
        < items_needed(margin=support - 0.01, discordance=0.02, alpha=0.025)


async def test_no_gold_for_gold_evaluators_blocks_and_names_the_feedback_to_use(engine, settings, gateway_for):
    prompt_id = seed_prompt(engine, settings, name="graded", model="local/gemma3-270m", distinct=ENOUGH,
                            feedback=[{"name": "correct_label", "source": "reviewer"}])
    provider = quiet_provider()
    run = await run_it(engine, settings, prompt_id, gateway_for(provider), evaluators=["exact"])

    assert run.status == "blocked" and provider.attempts == 0
    [root] = run.results.problems()
    assert root.code == "no_gold" and root.message == "evaluator exact compares against gold answers, and none of " \
                                                      f"the {ENOUGH} items has one"
    assert 'expected_from = "correct_label" in [prompts.graded]' in root.fix and "matches_baseline" in root.fix

    # expected_from naming feedback the logs do not carry: the names they do carry, and the line.
    found = findings_of(engine, settings, prompt_id, expected_from="expected")
    gold = found["gold_missing"]
    assert gold.level == "problem" and f"feedback names in its logs: 'correct_label' on {ENOUGH} logs" in gold.message
    assert 'set expected_from = "correct_label"' in gold.fix
    # With it set right, the gold is found and nothing blocks.
    assert found_ok(engine, settings, prompt_id, expected_from="correct_label")


def found_ok(engine: Any, settings: Settings, prompt_id: int, **overrides: Any) -> bool:
    found = findings_of(engine, settings, prompt_id, **overrides)
    return found["gold"].message == f"{ENOUGH} of {ENOUGH} items carry gold answers (feedback 'correct_label')" and \
        not problems(list(found.values()))


def test_agreement_only_is_a_warning_that_points_at_usable_feedback(engine, settings):
    prompt_id = seed_prompt(engine, settings, name="agree", model="local/gemma3-270m", distinct=ENOUGH,
                            feedback=[{"name": "correct_label", "source": "reviewer"}])
    found = findings_of(engine, settings, prompt_id)
    warning = found["agreement_only"]
    assert warning.level == "warning" and "agreement with the production model's own outputs" in warning.message
    assert 'expected_from = "correct_label"' in warning.fix
    bare = seed_prompt(engine, settings, name="bare", model="local/gemma3-270m", distinct=ENOUGH)
    assert "POST /datasets/import" in findings_of(engine, settings, bare)["agreement_only"].fix


async def test_unusable_candidate_models_block_the_run_and_say_which_and_why(engine, settings, gateway_for,
                                                                             monkeypatch):
    monkeypatch.delenv("PAID_X_KEY", raising=False)
    settings = settings.model_copy(update={"models": {"paid-x": fake_model(0.01, 0.02, api_key_env="PAID_X_KEY")}})
    prompt_id = seed_prompt(engine, settings, name="cands", model="local/gemma3-270m", distinct=ENOUGH)
    provider = quiet_provider()
    run = await run_it(engine, settings, prompt_id, gateway_for(provider, settings=settings),
                       models=["acme-mystery-3b", "paid-x"])

    assert run.status == "blocked" and provider.attempts == 0
    [root] = run.results.problems()
    assert root.code == "no_candidate_model"
    assert "acme-mystery-3b: no price (not in litellm's price map, none in settings)" in root.message
    assert "paid-x: its key variable PAID_X_KEY is not set" in root.message
    assert set(root.data["unusable"]) == {"acme-mystery-3b", "paid-x"}

    # One usable model among them: a warning that names the others; the run may go on.
    found = findings_of(engine, settings, prompt_id, models=["acme-mystery-3b", "local/smollm2-135m"])
    assert found["some_candidates_unusable"].level == "warning" and not problems(list(found.values()))


async def test_logged_costs_price_an_unpriced_baseline_and_the_run_goes_on(engine, settings, seeded, gateway_for):
    """The sentiment prompt moved to a self-hosted model name: its logs carry costs and tokens, so
    the run prices the baseline from them (a warning says so) and certifies a cheaper model."""
    with session_scope(engine) as session:
        session.exec(select(PromptVersion)).one().model = SELF_HOSTED
        for log in session.exec(select(LogRecord)):
            log.model = SELF_HOSTED
    gemma = resolve_model(settings, "local/gemma3-270m")
    implied = gemma.price(160, 1) / 161 * 1e6  # what every log cost, per 1M of its tokens
    with session_scope(engine) as session:
        found = {f.code: f for f in check_prompt(session, settings=settings, prompt_id=seeded)}
    warning = found["baseline_price_from_logs"]
    assert warning.level == "warning" and abs(warning.data["implied_per_mtok"] - implied) < 1e-9
    priced = resolver(settings, list(found.values()))(SELF_HOSTED)
    assert priced.has_price and abs(priced.price(160, 1) - gemma.price(160, 1)) < 1e-15

    provider = quiet_provider()
    run = await run_it(engine, settings, seeded, gateway_for(provider), models=["local/smollm2-135m"])
    assert run.status == "succeeded" and run.results.suggestion_id is not None, run.results.no_suggestion
    assert "baseline_price_from_logs" in [f.code for f in run.results.findings]
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
    assert suggestion.evidence.price_sources[SELF_HOSTED].startswith("implied by its logged costs")
    cut = round(100 * (1 - suggestion.candidate_cost_per_call / suggestion.baseline_cost_per_call))
    outcome = run.results.outcome(run.status, run.error)
    assert outcome.startswith(f"suggestion #{suggestion.id}: −{cut} % cost per call, matches_baseline holds "
                              "(margin 0.05, n ")


def test_blocked_is_a_terminal_run_status_reached_from_running():
    assert allowed("running", RunStatus.blocked) and not allowed("blocked", RunStatus.running)
    assert RunStatus.blocked in RUN_DONE


async def test_the_issue_case_names_both_causes_price_first(engine, settings, gateway_for):
    """Issue 20's first hour: a self-hosted model with no price, 31 calls over 6 distinct inputs. The run
    once said only "no move produced a candidate cheaper than the baseline"; now it names both causes."""
    prompt_id = seed_prompt(engine, settings, name="support-bot", model=SELF_HOSTED, distinct=6, calls=31, cost=None)
    provider = quiet_provider()
    run = await run_it(engine, settings, prompt_id, gateway_for(provider))
    assert run.status == "blocked" and provider.attempts == 0
    assert [f.code for f in run.results.problems()] == ["baseline_price_unknown", "too_few_inputs"]
    assert "no move produced" not in run.error


def zero_disagreements(n: int) -> tuple[list[ItemResult], list[ItemResult]]:
    """A baseline and a candidate that agree on every one of `n` items (0/1 scores, both kinds)."""
    baseline = [ItemResult(item_id=i, sample=0, output="x", scores={"label": float(i % 3 > 0)}) for i in range(n)]
    return baseline, [ItemResult(item_id=r.item_id, sample=0, output="x", scores=dict(r.scores)) for r in baseline]


def test_the_preflight_plans_at_the_level_certification_tests_each_arm_at(engine, settings):
    """certify() tests each of the first certify_top arms at α / certify_top (Bonferroni). A holdout
    of 60 items is enough at α 0.05 (Tango's bound with no disagreement: −0.046 > −0.05) but not at
    α 0.025 (−0.060): with certify_top = 2 even a candidate that never disagrees cannot pass, so the
    preflight must say so before the run spends anything, with the level it planned at and why."""
    prompt_id = seed_prompt(engine, settings, name="sixty", model="local/gemma3-270m", distinct=100)
    options = {"margin": 0.05, "alpha": 0.05}
    found = findings_of(engine, settings, prompt_id, certify_top=2, **options)
    holdout = next(f for f in found.values() if "holdout" in f.data).data["holdout"]
    assert holdout == 60

    # The real test certification runs, on a candidate with zero disagreements on those 60 items:
    baseline, candidate = zero_disagreements(holdout)
    at = {a: compare_results(baseline, candidate, evaluators=["label"], margin=0.05, alpha=a).verdicts["label"]
          for a in (0.05, 0.05 / 2)}
    assert at[0.05].passed and not at[0.05 / 2].passed  # certify_top = 1 passes it, certify_top = 2 cannot

    root = found["too_few_inputs"]  # so the preflight refuses it at certify_top = 2 ...
    assert root.level == "problem" and problems(list(found.values())) == [root]
    floor = fewest_items(0.05, 0.025)
    assert holdout < floor and root.data["holdout_minimum"] == floor and root.data["alpha"] == 0.025
    assert f"needs {floor} holdout items at α 0.025 (0.05 / 2 candidates tested)" in root.message
    assert root.data["holdout_needed"] == items_needed(margin=0.05, discordance=0.02, alpha=0.025, power=0.8)
    assert "certify_top = 1" in root.fix  # one arm tested at the full α: these items are enough for it

    one = findings_of(engine, settings, prompt_id, certify_top=1, **options)  # ... and accepts it at certify_top = 1
    assert not problems(list(one.values())) and one["few_inputs"].data["alpha"] == 0.05
    assert one["few_inputs"].data["holdout_minimum"] == fewest_items(0.05, 0.05) <= holdout


def test_a_repair_is_planned_at_the_level_its_superiority_test_runs_at(engine, settings):
    """A repair is certified by the same certify() (α / certify_top): a holdout of 4 items on which
    a repair wins every item shows a gain of 0.05 at α 0.05 but not at α 0.025."""
    prompt_id = seed_prompt(engine, settings, name="tiny", model="local/gemma3-270m", distinct=7)
    found = findings_of(engine, settings, prompt_id, repair=True, min_effect=0.05, certify_top=2)
    holdout = found["too_few_inputs"].data["holdout"]
    assert holdout == 4
    wins = [ItemResult(item_id=i, sample=0, output="x", scores={"label": 1.0}) for i in range(holdout)]
    losses = [ItemResult(item_id=i, sample=0, output="x", scores={"label": 0.0}) for i in range(holdout)]
    at = {a: compare_results(losses, wins, evaluators=["label"], margin=-0.05, alpha=a).verdicts["label"]
          for a in (0.05, 0.025)}
    assert at[0.05].passed and not at[0.025].passed
    root = found["too_few_inputs"]
    assert root.data["holdout_minimum"] == fewest_for_superiority(0.05, 0.025) > holdout
    assert "at α 0.025 (0.05 / 2 candidates tested)" in root.message
    one = findings_of(engine, settings, prompt_id, repair=True, min_effect=0.05, certify_top=1)
    assert one["enough_inputs"].data["holdout_minimum"] == fewest_for_superiority(0.05, 0.05) <= holdout
