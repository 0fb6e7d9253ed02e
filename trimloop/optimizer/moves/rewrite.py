"""`rewrite`: instructions proposed by an LLM through DSPy — "same rules, fewer words" and a
GEPA-style reflective rewrite that sees the items the candidates got wrong.

DSPy calls the model through trimloop's gateway: `GatewayEngine` is a DSPy engine
(`dspy.LM(..., engine=...)`, `complete(Request) -> Response`) that hands each call to the
gateway's event loop, so proposer calls are priced, cached and capped by the run's ledger like
every other. Only the instruction text (the part before the first example or placeholder) is
rewritten; examples and the placeholder block are kept verbatim, and a proposal that loses a
placeholder is dropped. With the bundled 135M model as proposer it runs, but its proposals rarely
survive the race: configure a capable `proposer_model` for real gains.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template
from trimloop.optimizer.moves.shorten import same_placeholders
from trimloop.optimizer.spec import CandidateSpec, MoveContext

_EXAMPLE_START = re.compile(r"(?im)^(here are (some )?examples|examples?\s*:|<example>|[A-Z][\w ]{0,30}:\s)")


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


def _programs() -> tuple[Any, Any]:
    import dspy

    class Compress(dspy.Signature):
        """Rewrite the instruction with the same rules in fewer words. Keep every rule, label and
        output format; drop politeness, repetition and decoration."""

        instruction: str = dspy.InputField()
        shorter_instruction: str = dspy.OutputField()

    class Reflect(dspy.Signature):
        """Improve the instruction so a small model answers these inputs like the expected
        outputs, in as few words as possible. Keep the output format."""

        instruction: str = dspy.InputField()
        mistakes: str = dspy.InputField(desc="inputs the model got wrong, with the expected output")
        new_instruction: str = dspy.OutputField()

    return dspy.Predict(Compress), dspy.Predict(Reflect)


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


@dataclass(frozen=True)
class Rewrite:
    name: str = "rewrite"
    composes: bool = False
    calls_model: bool = True  # each proposal costs proposer calls: on the baseline only, after the others

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        """Up to two proposals (compress; reflect when there are failures), via the proposer model."""
        if not context.proposer_model or context.gateway is None:
            return []
        import dspy

        template = candidate.version.template
        instruction = (split_instruction(template.text or "")[0] if template.kind == "text"
                       else next((m.content for m in template.messages or [] if m.role == "system"), ""))
        if not instruction:
            return []
        engine = GatewayEngine(context.gateway, context.proposer_model, asyncio.get_running_loop(), context.ledger)
        lm = dspy.LM(f"trimloop/{context.proposer_model}", engine=engine, cache=False, max_tokens=256,
                     temperature=0.0)
        compress, reflect = _programs()
        mistakes = "\n".join(f"input: {f.get('inputs')} → expected: {f.get('expected')}"
                             for f in context.failures[:5])

        def run() -> list[tuple[str, str]]:
            out = []
            with dspy.context(lm=lm):
                out.append(("compress", compress(instruction=instruction).shorter_instruction))
                if mistakes:
                    out.append(("reflect", reflect(instruction=instruction, mistakes=mistakes).new_instruction))
            return out

        try:
            proposals = await asyncio.to_thread(run)
        except Exception as exc:  # a proposer that cannot follow DSPy's format: no proposal
            from trimloop.core.errors import SpendCapReached

            if isinstance(exc, SpendCapReached):
                raise
            return []
        out = []
        for mode, text in proposals:
            new = _with_instruction(template, text or "")
            if new is None or new == template:
                continue
            version = candidate.version.replace(template=new)
            out.append(candidate.then(version, self.name, f"{mode} by {context.proposer_model}: "
                                                          f"{len(instruction)} → {len(text.strip())} chars"))
        return out
