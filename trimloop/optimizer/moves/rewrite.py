"""`rewrite`: instructions proposed by DSPy's GEPA optimizer (`dspy.GEPA`), reflecting on the
items the candidate got wrong.

The student is one `dspy.Predict` whose instruction is the prompt's instruction text (the part
before the first example or placeholder, or the system message); `TemplateAdapter` renders the
prompt's own template with GEPA's instruction in its place, so GEPA scores exactly the prompt the
race would run, on the candidate's model with its params. GEPA's metric is the run's evaluators.
Both LMs are DSPy engines over trimloop's gateway (`GatewayEngine`): the reflection LM is the
configured `proposer_model`, the task LM the candidate's model; every call is priced, cached and
charged to a `ShareLedger` capped at the move's share of the search budget (and to the run's).
GEPA's `max_metric_calls` is that share less its reflection calls, and a stopper ends it before
an iteration could pass the share. GEPA's candidates on the (quality ↑, prompt tokens ↓) Pareto
front enter the race; one no better and no shorter than another is left out. Examples and the
placeholder block are kept verbatim; a proposal that loses a placeholder is dropped. With the
bundled 135M model as proposer it runs, but its proposals rarely win: configure a capable
`proposer_model` for real gains.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.catalog import count_message_tokens, count_tokens
from trimloop.core.errors import SpendCapReached, TemplateError
from trimloop.core.ledger import ShareLedger
from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template, render
from trimloop.optimizer.moves.shorten import same_placeholders
from trimloop.optimizer.spec import CandidateSpec, MoveContext

_EXAMPLE_START = re.compile(r"(?im)^(here are (some )?examples|examples?\s*:|<example>|[A-Z][\w ]{0,30}:\s)")
MINIBATCH = 3  # GEPA's reflection minibatch
MAX_VALSET = 16  # items GEPA tracks its Pareto scores on
MAX_TRAINSET = 32


class GatewayEngine:
    """A synchronous DSPy engine whose calls run on the gateway's event loop."""

    def __init__(self, gateway: Any, model: str, loop: asyncio.AbstractEventLoop, ledger: Any = None,
                 max_tokens: int = 256):
        self.gateway, self.model, self.loop, self.ledger, self.max_tokens = gateway, model, loop, ledger, max_tokens

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        params = {"max_tokens": request.config.max_tokens or self.max_tokens,
                  "temperature": request.config.temperature or 0.0}
        future = asyncio.run_coroutine_threadsafe(
            self.gateway.call(self.model, messages=messages, params=params, ledger=self.ledger), self.loop)
        result = future.result()
        return Response(id=None, model=self.model, message=Message.assistant([TextPart(result.output)]),
                        finish_reason="stop", usage=Usage(input_tokens=result.input_tokens,
                                                          output_tokens=result.output_tokens,
                                                          total_tokens=result.input_tokens + result.output_tokens))

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class TaskEngine(GatewayEngine):
    """The task LM: the prompt's model with its own params (not DSPy's), a text template as text."""

    def __init__(self, gateway: Any, model: str, loop: asyncio.AbstractEventLoop, ledger: Any, *,
                 params: dict[str, Any], as_text: bool):
        super().__init__(gateway, model, loop, ledger)
        self.params, self.as_text = dict(params), as_text

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.insert(0, {"role": "system", "content": system})
        prompt = {"text": messages[-1]["content"]} if self.as_text else {"messages": messages}
        result = asyncio.run_coroutine_threadsafe(
            self.gateway.call(self.model, params=self.params, ledger=self.ledger, **prompt), self.loop).result()
        return Response(id=None, model=self.model, message=Message.assistant([TextPart(result.output)]),
                        finish_reason="stop", usage=Usage(input_tokens=result.input_tokens,
                                                          output_tokens=result.output_tokens,
                                                          total_tokens=result.input_tokens + result.output_tokens))


def split_instruction(text: str) -> tuple[str, str]:
    """(instruction, rest): the instruction ends where the first example or placeholder starts."""
    cut = len(text)
    match = _EXAMPLE_START.search(text)
    if match:
        cut = match.start()
    placeholder = PLACEHOLDER.search(text)
    if placeholder:
        line_start = text.rfind("\n", 0, placeholder.start()) + 1
        cut = min(cut, line_start)
    return text[:cut].strip(), text[cut:]


def _with_instruction(template: Template, instruction: str) -> Template | None:
    instruction = instruction.strip().strip('"').strip()
    if not instruction or PLACEHOLDER.search(instruction):
        return None
    if template.kind == "text":
        old, rest = split_instruction(template.text or "")
        if not old:
            return None
        new = Template.plain(f"{instruction}\n\n{rest.lstrip()}" if rest.strip() else instruction)
    else:
        messages = list(template.messages or [])
        system = next((i for i, m in enumerate(messages) if m.role == "system"), None)
        if system is None:
            return None
        messages[system] = ChatMessage(role="system", content=instruction)
        new = Template(kind="chat", messages=messages)
    return new if same_placeholders(template, new) else None


def instruction_of(template: Template) -> str:
    if template.kind == "text":
        return split_instruction(template.text or "")[0]
    return next((m.content for m in template.messages or [] if m.role == "system"), "")


def prompt_tokens(template: Template, items: list[Any]) -> float:
    """Mean prompt tokens of the template rendered on the items: the cost GEPA's front weighs."""
    tokens = []
    for item in items:
        try:
            prompt = render(template, item.inputs)
        except TemplateError:
            continue
        tokens.append(count_message_tokens(prompt) if isinstance(prompt, list) else count_tokens(prompt))
    return statistics.fmean(tokens) if tokens else 0.0


def front(points: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """(text, score ↑, tokens ↓) not dominated by another; at equal score the shorter wins."""
    return [p for p in points if not any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2])
                                         for q in points)]


@dataclass
class GepaOutcome:
    """What one GEPA run found: candidate instructions with their mean score on its valset."""

    candidates: list[tuple[str, float]] = field(default_factory=list)
    metric_calls: int = 0
    max_metric_calls: int = 0
    calls: int = 0  # paid gateway calls, task and reflection
    cache_hits: int = 0
    valset: int = 0
    note: str = ""


def gepa_rewrite(template: Template, model: str, params: dict[str, Any], *, context: MoveContext,
                 loop: asyncio.AbstractEventLoop, ledger: ShareLedger) -> GepaOutcome:
    """Run `dspy.GEPA` on the instruction (in a worker thread: DSPy is synchronous)."""
    import dspy
    from dspy.teleprompt.gepa import InstructionProposer
    from dspy.utils.exceptions import AdapterParseError

    from trimloop.evals.evaluators import EvalContext, score_output

    seed = instruction_of(template)
    share = ledger.max_calls or 0
    items = list(context.items)
    # The valset's seed evaluation plus at least one whole iteration must fit in the share.
    valset_n = min(MAX_VALSET, max(MINIBATCH, len(items) // 3), max(MINIBATCH, (share - 2 * MINIBATCH - 2) // 3),
                   len(items))
    val, train = items[:valset_n], items[valset_n:valset_n + MAX_TRAINSET] or items[:valset_n]
    per_iteration = 2 * MINIBATCH + 2 + valset_n  # parent and child minibatch, proposal (+ a shortening), full val
    reflections = share // (2 * MINIBATCH + valset_n) + 1
    max_metric_calls = share - 2 * reflections
    if len(items) < MINIBATCH or max_metric_calls < valset_n + 2 * MINIBATCH:
        return GepaOutcome(max_metric_calls=max(0, max_metric_calls),
                           note=f"rewrite: {share} calls and {len(items)} items are too few for one GEPA iteration "
                                f"(needs {valset_n + per_iteration} calls)")
    as_text = template.kind == "text"

    class TemplateAdapter(dspy.Adapter):  # type: ignore[misc]
        """The prompt's own template, GEPA's instruction in place of its instruction; the whole
        answer is the output (trimloop's evaluators read it as the race does)."""

        def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, str]]:
            candidate = _with_instruction(template, signature.instructions) or template
            prompt = render(candidate, inputs["variables"])
            return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            if completion is None:
                raise AdapterParseError(adapter_name="TemplateAdapter", signature=signature, lm_response="",
                                        message="no completion")
            return {"output": completion}

    class Task(dspy.Signature):
        variables: dict = dspy.InputField()
        output: str = dspy.OutputField()

    task_lm = dspy.LM(f"trimloop/{model}", engine=TaskEngine(context.gateway, model, loop, ledger, params=params,
                                                             as_text=as_text), cache=False)
    adapter = TemplateAdapter()

    class Program(dspy.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.prompt = dspy.Predict(Task.with_instructions(seed))

        def forward(self, variables: dict) -> Any:
            with dspy.context(lm=task_lm, adapter=adapter):
                out = self.prompt(variables=variables)
            return dspy.Prediction(output=out.output, instruction=self.prompt.signature.instructions)

    evaluators = list(context.evaluators)

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        ctx = EvalContext(output=pred.output or "", inputs=gold.variables, expected=gold.expected,
                          baseline_output=gold.baseline_output, item_id=gold.item_id, gateway=context.gateway,
                          ledger=ledger)
        scores = asyncio.run_coroutine_threadsafe(score_output(evaluators, ctx), loop).result()
        value = statistics.fmean(s.value for s in scores.values()) if scores else 0.0
        want = gold.expected if gold.expected is not None else gold.baseline_output
        why = "; ".join(f"{k} {s.value:.2f}" + (f" ({s.reason})" if s.reason else "") for k, s in scores.items())
        feedback = f"The answer should match {want!r}; the model answered {pred.output!r}. Scores: {why}."
        return dspy.Prediction(score=value, feedback=feedback,
                               objective_scores={"quality": value, "brevity": -float(count_tokens(pred.instruction))})

    def examples(chosen: list[Any]) -> list[Any]:
        return [dspy.Example(variables=i.inputs, expected=i.expected, baseline_output=i.baseline_output,
                             item_id=i.id).with_inputs("variables") for i in chosen]

    def stop(state: Any) -> bool:  # before each iteration: room for a whole one, in GEPA's share and the run's
        room = [ledger.remaining_calls, ledger.parent.remaining_calls if ledger.parent is not None else None]
        return any(r is not None and r < per_iteration for r in room)

    reflection_lm = dspy.LM(f"trimloop/{context.proposer_model}", cache=False, max_tokens=512, temperature=0.0,
                            engine=GatewayEngine(context.gateway, str(context.proposer_model), loop, ledger, 512))
    optimizer = dspy.GEPA(
        metric=metric, max_metric_calls=max_metric_calls, reflection_lm=reflection_lm,
        reflection_minibatch_size=MINIBATCH, use_merge=False,  # one component: nothing to merge
        instruction_proposer=InstructionProposer(
            additional_instructions="Shorter is better: keep the output format, labels and rules, in as few words "
                                    "as the task allows.", max_chars=max(1, len(seed))),
        num_threads=context.concurrency, track_stats=True, seed=context.seed,
        gepa_kwargs={"frontier_type": "hybrid", "stop_callbacks": [stop]})
    program = optimizer.compile(Program(), trainset=examples(train), valset=examples(val))
    result = program.detailed_results
    found = [(c.prompt.signature.instructions, float(s)) for c, s in zip(result.candidates, result.val_aggregate_scores)]
    return GepaOutcome(candidates=found, metric_calls=int(result.total_metric_calls or 0),
                       max_metric_calls=max_metric_calls, calls=ledger.calls, cache_hits=ledger.cache_hits,
                       valset=valset_n)


@dataclass(frozen=True)
class Rewrite:
    name: str = "rewrite"
    composes: bool = False
    calls_model: bool = True  # its proposals cost model calls: on the baseline only, after the others

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        """GEPA's Pareto candidates (quality ↑, prompt tokens ↓) as `rewrite` candidates."""
        if not context.proposer_model or context.gateway is None or not context.items or not context.evaluators:
            return []
        template = candidate.version.template
        seed = instruction_of(template)
        if not seed:
            return []
        share = context.budget_calls or 0  # no share of a search budget: GEPA does not run
        if context.ledger is not None and context.ledger.remaining_calls is not None:
            share = min(share, context.ledger.remaining_calls)
        ledger = ShareLedger(max_calls=share, name="rewrite (GEPA)", parent=context.ledger)
        outcome = await asyncio.to_thread(gepa_rewrite, template, candidate.version.model,
                                          dict(candidate.version.params), context=context,
                                          loop=asyncio.get_running_loop(), ledger=ledger)
        if context.ledger is not None and context.ledger.remaining_calls == 0:
            raise SpendCapReached("call cap reached during the rewrite move", where="ledger 'run'",
                                  hint="raise the run's budget in calls")
        if context.emit is not None:  # what GEPA did, whether or not anything came of it
            context.emit("rewrite.gepa", {"proposer": context.proposer_model, "share": share, "calls": outcome.calls,
                                          "cache_hits": outcome.cache_hits, "metric_calls": outcome.metric_calls,
                                          "max_metric_calls": outcome.max_metric_calls, "valset": outcome.valset,
                                          "candidates": [{"instruction": t, "score": s} for t, s in outcome.candidates],
                                          "note": outcome.note})
        sample = list(context.items)[:20]
        seed_score = next((s for text, s in outcome.candidates if text == seed), None)
        points = []
        for text, score in outcome.candidates:
            new = _with_instruction(template, text)
            if new is None:
                continue
            points.append((text, score, prompt_tokens(new, sample)))
        out = []
        for text, score, tokens in sorted(front(points), key=lambda p: (-p[1], p[2])):
            new = _with_instruction(template, text)
            if new is None or new == template:
                continue
            version = candidate.version.replace(template=new)
            was = f"{seed_score:.2f}" if seed_score is not None else "?"
            out.append(candidate.then(version, self.name, (
                f"GEPA by {context.proposer_model}: instruction rewritten, {len(seed)} → {len(text.strip())} chars "
                f"({prompt_tokens(template, sample):.0f} → {tokens:.0f} prompt tokens), GEPA score {was} → "
                f"{score:.2f} on {outcome.valset} search items; "
                f"{outcome.calls} calls ({outcome.metric_calls} metric calls of {outcome.max_metric_calls})")))
        return out
