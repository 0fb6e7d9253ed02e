"""The search's choices before and between looks: which candidates race, and which lead."""

from __future__ import annotations

from trimloop.core.templates import Template
from trimloop.evals.runner import ItemResult
from trimloop.optimizer.race import Arm, compare
from trimloop.optimizer.search import family, final_ranking, prospect, rank, select_arms
from trimloop.optimizer.spec import VersionSpec, start

BASE = VersionSpec(Template.plain("Be careful. Answer positive or negative.\n\nReview: {{t}}\nSentiment:"),
                   "big", {"max_tokens": 2})


def _candidate(model: str, examples: int | None, level: str | None):  # type: ignore[no-untyped-def]
    c = start(BASE)
    text = f"{model}/{examples}/{level}: {{{{t}}}}"
    if model != BASE.model:
        c = c.then(c.version.replace(model=model, template=Template.plain(text)), "retarget", f"big → {model}")
    if level:
        c = c.then(c.version.replace(template=Template.plain(text + " ")), "shorten", f"{level}: −10% characters")
    if examples is not None:
        c = c.then(c.version.replace(template=Template.plain(text + "  ")), "prune_examples",
                   f"keep {examples} of 6 examples")
    return c


def test_every_family_races_before_a_second_instruction_length_of_one():
    # 2 models × 3 example sets × 3 instruction lengths; shortening saves least.
    cands, est = [], {}
    for model, model_cost in (("small", 0.3), ("big", 1.0)):
        for examples, ex_cost in ((0, 0.2), (2, 0.5), (None, 1.0)):
            for level, level_cost in ((None, 1.0), ("medium", 0.95), ("essentials", 0.9)):
                if model == "big" and examples is None and level is None:
                    continue  # the baseline itself
                c = _candidate(model, examples, level)
                cands.append(c)
                est[c.sha] = 100 * model_cost * ex_cost * level_cost
    arms = select_arms(cands, est, baseline_cost=100.0, limit=6)
    families = {family(a.candidate) for a in arms}
    assert len(arms) == 6 and len(families) == 6  # one of each family, none twice
    assert all(any(step["detail"].startswith("essentials") for step in a.candidate.lineage) for a in arms)
    assert [a.est_cost for a in arms] == sorted(a.est_cost for a in arms)

    # Room for more: the second round adds the next-cheapest length of the cheapest families.
    more = select_arms(cands, est, baseline_cost=100.0, limit=9)
    assert {family(a.candidate) for a in more} == families and len(more) == 9

    # More families than room: spread over the cost ranking, the cheapest and the dearest kept.
    few = select_arms(cands, est, baseline_cost=100.0, limit=3)
    reps = sorted(est[a.candidate.sha] for a in arms)
    assert len(few) == 3 and few[0].est_cost == reps[0] and few[-1].est_cost == reps[-1]

    # Nothing dearer than the baseline races.
    assert select_arms(cands, est, baseline_cost=5.0, limit=20) == [
        a for a in select_arms(cands, est, baseline_cost=5.0, limit=20) if a.est_cost < 5.0]


def _arm(est_cost: float, agree: int, disagree: int, *, sha_hint: str) -> Arm:
    """An arm scored on agree + disagree items: right where the baseline is right on `agree`,
    wrong where the baseline is right on the others."""
    arm = Arm(_candidate("small", None, sha_hint), est_cost=est_cost)
    for i in range(agree + disagree):
        arm.add(ItemResult(item_id=i, sample=0, output="x", scores={"acc": 1.0 if i < agree else 0.0}))
    base = {i: [1.0] for i in range(agree + disagree)}
    arm.evidence["acc"] = compare(base, arm.scores("acc"), margin=0.03, alpha=0.05)  # type: ignore[assignment]
    return arm


def test_a_cheap_arm_with_a_doubtful_record_ranks_below_a_dearer_one_at_parity():
    cheap_doubtful = _arm(10.0, agree=60, disagree=12, sha_hint="a")  # −85 %, δ̂ = −0.17
    dearer_parity = _arm(50.0, agree=72, disagree=0, sha_hint="b")  # −50 %, δ̂ = 0
    assert prospect(cheap_doubtful, 100.0) < 0.01
    assert 0.4 < prospect(dearer_parity, 100.0) < 0.5  # likely non-inferior, times the saving
    assert rank([cheap_doubtful, dearer_parity], 100.0) == [dearer_parity, cheap_doubtful]

    # Between two arms at parity the cheaper one leads.
    cheaper_parity = _arm(20.0, agree=72, disagree=0, sha_hint="c")
    assert rank([dearer_parity, cheaper_parity], 100.0)[0] is cheaper_parity

    # Eliminated arms never rank; dropped ones follow the racing ones, and only while plausible.
    cheap_doubtful.status = "dropped"
    gone = _arm(5.0, agree=70, disagree=2, sha_hint="d")
    gone.status = "eliminated"
    ranked = final_ranking([cheap_doubtful, dearer_parity, gone, cheaper_parity], 100.0)
    assert ranked == [cheaper_parity, dearer_parity]  # the dropped arm's upper bound is below −margin


def test_a_migration_races_dearer_candidates_and_ranks_by_the_chance_of_holding_quality():
    cheap = _candidate("small", 0, None)
    dear = _candidate("huge", None, None)
    est = {cheap.sha: 40.0, dear.sha: 250.0}
    assert [a.candidate for a in select_arms([cheap, dear], est, baseline_cost=100.0, limit=5)] == [cheap]
    assert [a.candidate for a in select_arms([cheap, dear], est, baseline_cost=100.0, limit=5, migrate=True)] == [
        cheap, dear]  # the baseline's model retires: it cannot stay, so a dearer replacement may race

    doubtful_cheap = _arm(10.0, agree=60, disagree=12, sha_hint="a")
    parity_dear = _arm(250.0, agree=72, disagree=0, sha_hint="b")  # costs more than the baseline
    parity_cheaper = _arm(150.0, agree=72, disagree=0, sha_hint="c")
    assert prospect(parity_dear, 100.0) == 0.0  # no saving: an ordinary run never picks it
    assert prospect(parity_dear, 100.0, migrate=True) > 0.9
    assert rank([doubtful_cheap, parity_dear, parity_cheaper], 100.0, migrate=True) == [
        parity_cheaper, parity_dear, doubtful_cheap]  # quality first, then cost
