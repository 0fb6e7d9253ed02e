"""`retarget`: the same prompt on each cheaper model of the candidate list (on every priced one
when migrating off a retiring model: the baseline cannot stay where it is; and on a repair, where
a stronger, dearer model may be the fix).

A base (completion-only) target gets a plain-text version of a chat template: the system text,
then each few-shot user/assistant pair as `Input:`/`Output:` lines, then the last user message
with an `Output:` cue. A text template stays text where the target serves plain-text completions
(any OpenAI-compatible server, e.g. the bundled llama.cpp models: small instruct models often do
better completion-style); a chat-only target gets it as one user message.
"""

from __future__ import annotations

from dataclasses import dataclass

from trimloop.core.catalog import ResolvedModel
from trimloop.core.errors import ConfigError
from trimloop.core.templates import ChatMessage, Template
from trimloop.optimizer.spec import CandidateSpec, MoveContext

# A typical call's shape, used only to rank models by price.
_TYPICAL_IN, _TYPICAL_OUT = 500, 50


def typical_price(model: ResolvedModel) -> float:
    return model.price(_TYPICAL_IN, _TYPICAL_OUT)


def chat_to_text(template: Template) -> Template:
    messages = list(template.messages or [])
    system = [m.content.strip() for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
    parts = ["\n\n".join(system)] if system else []
    shots = []
    for i, message in enumerate(turns):
        if i == last_user:
            break
        label = "Input" if message.role == "user" else "Output"
        shots.append(f"{label}: {message.content.strip()}")
    if shots:
        parts.append("\n".join(shots))
    if last_user is not None:
        parts.append(f"Input: {turns[last_user].content.strip()}\nOutput:")
    return Template.plain("\n\n".join(p for p in parts if p))


def text_to_chat(template: Template) -> Template:
    return Template(kind="chat", messages=[ChatMessage(role="user", content=template.text or "")])


def convert_for(template: Template, model: ResolvedModel) -> Template:
    if model.completion_only and template.kind == "chat":
        return chat_to_text(template)
    if template.kind == "text" and not model.takes_text:
        return text_to_chat(template)
    return template


@dataclass(frozen=True)
class Retarget:
    name: str = "retarget"
    composes: bool = False  # on the prompt as it is, not on other proposals
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        current = context.resolve(candidate.version.model)
        current_price = typical_price(current)
        proposals = []
        for model_id in context.models:
            if model_id == candidate.version.model:
                continue
            try:
                target = context.resolve(model_id)
            except ConfigError:
                continue
            if not target.has_price or (not (context.migrate or context.repair) and typical_price(target) >= current_price):
                continue
            template = convert_for(candidate.version.template, target)
            converted = ""
            if template.kind != candidate.version.template.kind:
                converted = f" ({candidate.version.template.kind} → {template.kind} template)"
            version = candidate.version.replace(template=template, model=model_id)
            proposals.append(candidate.then(version, self.name, f"{candidate.version.model} → {model_id}{converted}"))
        return proposals
