"""bench.peers_search plumbing without models: DSPy's program renders as trimloop's prompt, its
calls reach the gateway as plain text for the base model, and the docs section says who is ahead."""

from __future__ import annotations

import pytest

import dspy  # noqa: E402

from bench.__main__ import section_peers_search  # noqa: E402
from bench.optimize import SST2_PROMPT  # noqa: E402
from bench.peers_search import (  # noqa: E402
    PROPOSER_MODEL, TASK_MODEL, Loop, dspy_parts, is_right, render_completion, split_prompt,
)
from trimloop.core.gateway import Gateway  # noqa: E402
from trimloop.core.ledger import Ledger  # noqa: E402
from trimloop.core.settings import Settings  # noqa: E402
from trimloop.optimizer.moves.rewrite import GatewayEngine  # noqa: E402
from trimloop.testing.fake_provider import FakeProvider  # noqa: E402


def test_start_program_renders_the_baseline_prompt() -> None:
    instruction, demos = split_prompt(SST2_PROMPT)
    assert len(demos) == 6 and demos[0]["sentiment"] == "positive"
    assert instruction.startswith("You are a **very** careful") and "Review:" not in instruction
    assert render_completion(instruction, demos, {"review": "{{text}}"}, ["review"], "sentiment") == SST2_PROMPT
    zero_shot = render_completion("Classify.", [], {"review": "fine"}, ["review"], "sentiment")
    assert zero_shot == "Classify.\n\nReview: fine\nSentiment:"


def test_is_right_reads_one_label() -> None:
    assert is_right(" Positive.", "positive")
    assert not is_right("positive or negative", "positive")  # two labels named: ambiguous
    assert not is_right(None, "negative")


def test_predict_goes_through_the_gateway_as_text_and_proposer_as_chat() -> None:
    seen: list[tuple[str, object]] = []

    def respond(model: str, prompt: object) -> str:
        seen.append((model, prompt))
        return " negative" if model == TASK_MODEL else "Decide the sentiment."  # no DSPy field markers

    provider = FakeProvider(responder=respond)
    gateway, loop = Gateway(Settings(), provider=provider), Loop()
    try:
        task_name = f"trimloop/{TASK_MODEL}"
        ByModel, TextEngine = dspy_parts(task_name)
        ledger = Ledger()
        task_lm = dspy.LM(task_name, engine=TextEngine(gateway, TASK_MODEL, loop.loop, ledger), cache=False,
                          temperature=0.0, max_tokens=3)
        proposer_lm = dspy.LM(f"trimloop/{PROPOSER_MODEL}", engine=GatewayEngine(gateway, PROPOSER_MODEL, loop.loop),
                              cache=False, max_tokens=64)
        adapter = ByModel()
        instruction, demos = split_prompt(SST2_PROMPT)
        program = dspy.Predict(dspy.Signature("review -> sentiment", instruction))
        program.demos = [dspy.Example(**d) for d in demos]
        with dspy.context(lm=task_lm, adapter=adapter):
            answer = program(review="a dull film .").sentiment
            with dspy.context(lm=proposer_lm):
                proposal = dspy.Predict("notes -> proposed_instruction")(notes="x").proposed_instruction
    finally:
        loop.close()
    assert answer == "negative"
    model, prompt = seen[0]
    assert model == TASK_MODEL and prompt == SST2_PROMPT.replace("{{text}}", "a dull film .")
    assert provider.calls[0]["params"] == {"temperature": 0, "max_tokens": 3, "stop": ["\n"]}
    assert ledger.calls == 1
    assert isinstance(seen[1][1], list)  # the chat model got chat messages
    assert proposal == "Decide the sentiment." and type(adapter.chat).lenient >= 1


def _result(dspy_acc: float, trimloop_acc: float) -> dict:
    test = {"accuracy": None, "cost_per_call": 1e-6, "input_tokens_per_call": 200}
    return {
        "model": TASK_MODEL, "test_n": 300, "test_source": "trimloop's holdout", "settings": {"llama_threads": 1},
        "baseline": dict(test, accuracy=0.87),
        "trimloop": {"store": "s.db", "run_id": 1, "certified": True, "change": ["shorten"], "search_calls": 400,
                     "certify_calls": 500, "certified_delta_interval": [-0.02, 0.03], "certified_n": 519,
                     "test": dict(test, accuracy=trimloop_acc, cost_per_call=0.5e-6)},
        "dspy": {"optimizer": "MIPROv2(auto='light')", "demos": 4, "instruction_changed": True, "val": 300,
                 "search_calls": {"made": 700, "task_made": 680, "proposer_made": 20, "requested": 800},
                 "test": dict(test, accuracy=dspy_acc, cost_per_call=0.8e-6)},
    }


def test_docs_section_names_where_trimloop_is_behind() -> None:
    lines, notes = section_peers_search(_result(dspy_acc=0.90, trimloop_acc=0.86))
    table = "\n".join(lines)
    assert "−50%" in table and "−20%" in table and "quality only" in table
    assert any("more accurate than trimloop's suggestion" in n and "0.900 vs 0.860" in n for n in notes)
    assert any("asked for fewer model calls (800)" in n and "(900)" in n for n in notes)
    rerun = _result(dspy_acc=0.90, trimloop_acc=0.86)  # trimloop read from a rerun: some calls were cached
    rerun["trimloop"].update(search_requests=400, certify_requests=1500, search_calls=0, certify_calls=1100)
    lines, notes = section_peers_search(rerun)
    assert "1,500 (1,100 made, rest cached)" in "\n".join(lines)
    assert any("(1,900)" in n for n in notes)
    _, notes = section_peers_search(_result(dspy_acc=0.85, trimloop_acc=0.86))
    assert not any("more accurate" in n for n in notes)


def test_trimloop_side_is_read_from_a_store(tmp_path, sqlite_url: str) -> None:
    """A finished sst2 run with a suggestion: calls, the candidate, its holdout, and which holdout
    sentences the store's response cache holds answers for (those certification scored).
    SQLite only (`sqlite_url`): bench.optimize's store is a SQLite file that the bench copies."""
    from bench.peers_search import PARAMS, answered_in_store, copy_store, trimloop_result
    from trimloop.core.db import make_engine, session_scope, upgrade
    from trimloop.core.llm_cache import cache_key
    from trimloop.core.tables import (
        CachedResponse, Dataset, DatasetItem, OptimizationRun, Prompt, PromptVersion, Suggestion, utcnow,
    )
    from trimloop.core.templates import Template, render

    home = tmp_path / "sst2" / ".trimloop"
    home.mkdir(parents=True)
    url = f"sqlite:///{home / 'trimloop.db'}"
    upgrade(url)
    engine = make_engine(url)
    short = Template.plain("Sentiment of: {{text}}\nSentiment:")
    rows = [("a fine film .", "positive"), ("a dull film .", "negative"), ("so good .", "positive")]
    with session_scope(engine) as session:
        prompt = Prompt(name="sst2", connector="bench")
        session.add(prompt)
        session.flush()
        base = PromptVersion(prompt_id=prompt.id, sha="b", template=Template.plain(SST2_PROMPT).dump(),
                             model=TASK_MODEL, params=PARAMS, connector="bench")
        cand = PromptVersion(prompt_id=prompt.id, sha="c", template=short.dump(), model=TASK_MODEL, params=PARAMS,
                             connector="bench")
        session.add_all([base, cand])
        session.flush()
        dataset = Dataset(prompt_id=prompt.id, version_id=base.id, name="d", source="logs", content_hash="h")
        session.add(dataset)
        session.flush()
        session.add(DatasetItem(dataset_id=dataset.id, position=0, split="search", inputs={"text": "x"},
                                expected="positive"))
        for i, (text, label) in enumerate(rows, start=1):
            session.add(DatasetItem(dataset_id=dataset.id, position=i, split="holdout", inputs={"text": text},
                                    expected=label))
        started = utcnow()
        run = OptimizationRun(prompt_id=prompt.id, status="succeeded", calls_made=900, started_at=started,
                              finished_at=started, results={"dataset_id": dataset.id, "search_calls": 400,
                                                            "certify_calls": 500})
        session.add(run)
        session.flush()
        session.add(Suggestion(prompt_id=prompt.id, run_id=run.id, baseline_version_id=base.id,
                               candidate_version_id=cand.id, candidate_sha="c", baseline_cost_per_call=2e-6,
                               candidate_cost_per_call=1e-6, evidence={
                                   "lineage": [{"detail": "shorten"}],
                                   "evaluators": {"label": {"baseline_mean": 0.87, "candidate_mean": 0.88,
                                                            "lower": -0.01, "upper": 0.03, "n": 2}}}))
        wire = dict(PARAMS)
        for text, _ in rows[:2]:  # certification scored the first two holdout sentences
            key = cache_key(model=TASK_MODEL, prompt=render(short, {"text": text}), params=wire, seed=None)
            session.add(CachedResponse(key=key, model=TASK_MODEL, output=" positive", input_tokens=9,
                                       output_tokens=1, cost=1e-6, latency_s=0.1))
    engine.dispose()

    found = trimloop_result(tmp_path / "sst2")
    assert found is not None
    assert (found["search_calls"], found["certify_calls"], found["certified"]) == (400, 500, True)
    assert found["change"] == ["shorten"] and found["certified_n"] == 2 and found["model"] == TASK_MODEL
    assert [h["text"] for h in found["holdout"]] == [text for text, _ in rows]
    copy = copy_store(home / "trimloop.db", tmp_path / "copy.db")
    seen = answered_in_store(copy, TASK_MODEL, Template.model_validate(found["template"]), found["params"],
                             found["holdout"], 512)
    assert seen == [0, 1]
    assert trimloop_result(tmp_path / "absent") is None


def test_mipro_compiles_offline_and_saves_for_reuse(tmp_path) -> None:
    """`--dev` MIPROv2 (2 candidates, 2 trials) through a gateway with a fake provider: the compile runs, counts the
    calls of each model, saves the program, and `--reuse-compile` rebuilds it."""
    import argparse

    from bench.peers_search import COMPILED, DATA, compile_dspy, reuse_compiled

    if not (DATA / "dev.jsonl").exists():
        pytest.skip(f"{DATA} (the shared sst2 data) is absent")

    def respond(model: str, prompt: object) -> str:
        if model == TASK_MODEL:
            last = str(prompt).rsplit("Review:", 1)[-1]
            return " negative" if any(w in last for w in ("bad", "dull", "not", "no ", "worst")) else " positive"
        return "Classify the review as positive or negative."

    gateway, loop = Gateway(Settings(), provider=FakeProvider(responder=respond)), Loop()
    args = argparse.Namespace(dev=True, train_n=12, val_n=6, num_threads=1, seed=0, dir=tmp_path)
    try:
        report, best, engine = compile_dspy(loop, gateway, args, lambda message: None)
        again, rebuilt, _ = reuse_compiled(loop, gateway, args)
    finally:
        loop.close()
        dspy.configure(lm=None, adapter=None)  # the bench configures DSPy globally; other tests must not see it
    assert "error" not in report, report.get("error")
    calls = report["search_calls"]
    assert calls["task_requested"] > 0 and calls["proposer_requested"] > 0
    assert calls["requested"] == calls["task_requested"] + calls["proposer_requested"]
    assert report["optimizer"] == "MIPROv2(auto=None)" and report["val_score_after"] is not None
    assert (tmp_path / COMPILED).exists() and again["reused_from"].endswith(COMPILED)
    assert rebuilt.signature.instructions == best.predictors()[0].signature.instructions
    assert len(rebuilt.demos) == report["demos"]
