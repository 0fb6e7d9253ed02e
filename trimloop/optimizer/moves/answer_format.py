"""`answer_format`: make the answer follow its format — a repair move (optimizer.repair).

A prompt whose answers name no label, or several, fails its evaluator however good the model is.
This move states the allowed answers and the output shape, stops the answer at the end of its
line, and where the model serves plain-text completions (the bundled llama.cpp models, any
OpenAI-compatible server) also offers the chat prompt in completion form, ending on an `Answer:`
cue that the model continues with one label. Variants, each one candidate:

- `rule`: the rule ("Answer with exactly one of: billing, bug, other. Reply with the label only.")
  added to the instruction (a chat prompt's system message, or a new one; a text prompt's top);
- `rule + reminder`: the rule, and the allowed answers again after the input (small models heed
  the last thing they read);
- `completion`: the chat prompt with the rule as plain text ending on `Answer:` (chat → text), or a
  text prompt as one chat message for a chat-only model (text → chat);
- `examples`: the output shape shown, not only told: a few search-split items with their gold
  answers (one per answer, `MoveContext.examples`) before the input of a chat prompt — as
  `Input:`/`Answer:` lines in completion form, or as user/assistant turns. Small models follow a shown
  format far more often than a stated one; the examples come from the search split, never the
  holdout, and the diff shows them to the reviewer.

Every variant adds the stop sequence "\\n" and keeps `max_tokens` (or sets a small one when unset).
The allowed answers come from the run's label evaluator, else from the gold answers when they are
a few short labels (`MoveContext.answers`); without them the move proposes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trimloop.core.catalog import count_tokens
from trimloop.core.errors import ConfigError
from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template, render
from trimloop.optimizer.moves.retarget import text_to_chat
from trimloop.optimizer.spec import CandidateSpec, MoveContext, VersionSpec

CUE = "Answer:"


def rule_text(answers: list[str]) -> str:
    """The answer-format rule in words."""
    listed = ", ".join(answers)
    return f"Answer with exactly one of: {listed}. Reply with that one label only, with no other words."


def _params(params: dict[str, Any], answers: list[str]) -> dict[str, Any]:
    """Stop at the end of the answer's line; room for the longest label when max_tokens is unset."""
    out = dict(params)
    stop = out.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if "\n" not in stops:
        stops.append("\n")
    out["stop"] = stops
    if out.get("max_tokens") is None:
        out["max_tokens"] = max(count_tokens(" " + a) for a in answers) + 3
    return out


def with_rule(template: Template, answers: list[str], *, remind: bool) -> Template:
    """The template with the rule in its instruction (and, with `remind`, after the input)."""
    rule = rule_text(answers)
    reminder = f"Answer ({' / '.join(answers)}):"
    if template.kind == "text":
        text = (template.text or "").rstrip()
        body = f"{rule}\n\n{text}"
        if remind:
            body += f"\n{reminder}"
        return Template.plain(body)
    messages = [ChatMessage(role=m.role, content=m.content) for m in template.messages or []]
    system = next((i for i, m in enumerate(messages) if m.role == "system"), None)
    if system is None:
        messages.insert(0, ChatMessage(role="system", content=rule))
    else:
        messages[system] = ChatMessage(role="system", content=f"{messages[system].content.rstrip()}\n\n{rule}")
    if remind:
        last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if last is not None:
            messages[last] = ChatMessage(role="user", content=f"{messages[last].content.rstrip()}\n\n{rule}")
    return Template(kind="chat", messages=messages)


def completion_form(template: Template, answers: list[str],
                    examples: list[tuple[str, str]] | None = None) -> Template:
    """A chat template as plain text: instruction and rule, the few-shot pairs (and `examples`:
    (input text, answer)) as Input/Answer lines, the last user message, then the `Answer:` cue."""
    messages = list(template.messages or [])
    system = [m.content.strip() for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
    parts = ["\n".join(system + [rule_text(answers)])]
    shots = [f"{'Input:' if m.role == 'user' else CUE} {m.content.strip()}" for i, m in enumerate(turns)
             if last_user is None or i < last_user]
    shots += [f"Input: {text}\n{CUE} {answer}\n" for text, answer in examples or []]
    if shots:
        parts.append("\n".join(shots).strip())
    if last_user is not None:
        parts.append(f"Input: {turns[last_user].content.strip()}\n{CUE}")
    return Template.plain("\n\n".join(p for p in parts if p))


def shown(template: Template, examples: list[tuple[dict[str, Any], str]]) -> list[tuple[str, str]]:
    """The examples' inputs as a chat prompt's input would read them (its last user message), each
    with its answer; [] for a text template, or when an input would add a placeholder."""
    out = []
    for inputs, answer in examples:
        try:
            rendered = render(template, inputs)
        except Exception:  # an example that does not fill the template: not shown
            return []
        if isinstance(rendered, list):
            users = [m["content"] for m in rendered if m["role"] == "user"]
            text = users[-1].strip() if users else ""
        else:  # a text template's examples are its own business (prune_examples): none added here
            return []
        if not text or PLACEHOLDER.search(text):
            return []
        out.append((text, answer))
    return out


def chat_with_examples(template: Template, answers: list[str], examples: list[tuple[str, str]]) -> Template:
    """The chat template with the rule, and the examples as user/assistant turns before the input."""
    ruled = with_rule(template, answers, remind=False)
    messages = list(ruled.messages or [])
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages))
    turns = [ChatMessage(role=role, content=content) for text, answer in examples
             for role, content in (("user", text), ("assistant", answer))]
    return Template(kind="chat", messages=messages[:last] + turns + messages[last:])


@dataclass(frozen=True)
class AnswerFormat:
    name: str = "answer_format"
    composes: bool = True  # also applied to the retargeted versions of a repair
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        answers = list(context.answers)
        if len(answers) < 2:
            return []
        version = candidate.version
        try:
            model = context.resolve(version.model)
        except ConfigError:
            return []
        params = _params(version.params, answers)
        variants: list[tuple[Template, str]] = [
            (with_rule(version.template, answers, remind=False), "state the allowed answers, stop at the line's end"),
            (with_rule(version.template, answers, remind=True), "state the allowed answers before and after the "
                                                                 "input, stop at the line's end"),
        ]
        examples = shown(version.template, context.examples)
        few = f"{len(examples)} examples of the answer from the search split"
        if version.template.kind == "chat" and model.takes_text:
            variants.append((completion_form(version.template, answers), "chat → completion form ending on "
                                                                          f"{CUE!r}, allowed answers stated"))
            if examples:
                variants.append((completion_form(version.template, answers, examples),
                                 f"chat → completion form ending on {CUE!r}, allowed answers stated, {few}"))
        elif version.template.kind == "text" and not model.takes_text:
            variants.append((with_rule(text_to_chat(version.template), answers, remind=False),
                             "text → chat (a chat-only model), allowed answers stated"))
        if version.template.kind == "chat" and examples:
            variants.append((chat_with_examples(version.template, answers, examples),
                             f"allowed answers stated, {few} as chat turns"))

        out, seen = [], {version.sha}
        for template, detail in variants:
            new = VersionSpec(template, version.model, params)
            if new.sha in seen:
                continue
            seen.add(new.sha)
            out.append(candidate.then(new, self.name, detail))
        return out
