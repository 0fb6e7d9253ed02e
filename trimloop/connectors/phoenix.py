"""The phoenix connector: Arize Phoenix's prompts, version tags, LLM spans and span annotations
over its REST API (`/v1/...`).

Phoenix's rules are kept, not hidden: chat templates only (a string template is reported and
skipped), lowercase identifiers for prompt and tag names, and opaque version ids
(`UHJvbXB0VmVyc2lvbjox`), which become `external_version` as they are. Tags are the labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from trimloop.connectors.base import Checkpoint, Connector, LogItem, Looked, Problem, PromptItem, WriteResult
from trimloop.connectors.http import JsonClient, secret_from_env
from trimloop.connectors.otel import llm_fields, params_meta
from trimloop.core.egress import Egress
from trimloop.core.errors import ConnectorError, UserError
from trimloop.core.templates import ROLES, Template

IDENTIFIER = re.compile(r"^[a-z0-9]([_a-z0-9-]*[a-z0-9])?$")
PROVIDERS = {"openai": "OPENAI", "azure": "AZURE_OPENAI", "anthropic": "ANTHROPIC", "gemini": "GOOGLE",
             "google": "GOOGLE", "deepseek": "DEEPSEEK", "xai": "XAI", "ollama": "OLLAMA", "groq": "GROQ"}
MAX_SPANS_PAGE = 1000
COUNT_CAP = 1000  # LLM spans counted in a project the connector was not asked to read


class PhoenixConnector(Connector):
    """Prompts with tags, and LLM spans with their annotations, from every project (or one)."""

    type = "phoenix"

    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        url: str = Field(description="Phoenix server, e.g. http://127.0.0.1:6006")
        project: str | None = Field(default=None, description="one project; default: every project")
        api_key_env: str | None = Field(default=None, description="env var with a Phoenix API key")
        lookback_s: float = Field(default=300.0, ge=0, description="re-read window for late spans")
        timeout_s: float = 30.0
        page_size: int = Field(default=100, ge=1, le=1000)

    def __init__(self, *, name: str, options: dict[str, Any] | None = None,
                 transport: httpx.BaseTransport | None = None, egress: Egress | None = None) -> None:
        super().__init__(name=name, options=options, egress=egress)
        key = secret_from_env(self.options.api_key_env, connector=name, option="api_key_env")
        self.http = JsonClient(base_url=self.options.url, service="Phoenix", connector=name, egress=self.egress,
                               timeout_s=self.options.timeout_s, transport=transport,
                               headers={"Authorization": f"Bearer {key}"} if key else None,
                               secrets=(key,))

    def close(self) -> None:
        self.http.close()

    # -- prompts ---------------------------------------------------------------------------
    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        for prompt in self._pages("/v1/prompts"):
            name = prompt.get("name")
            for version in self._pages(f"/v1/prompts/{name}/versions"):
                yield self._prompt_item(str(name), version, prompt.get("description"))

    def _prompt_item(self, name: str, version: dict[str, Any], description: str | None) -> PromptItem | Problem:
        vid = str(version.get("id"))
        where = f"{self.options.url} prompt {name!r} version {vid}"
        template = version.get("template") or {}
        if not isinstance(template, dict) or template.get("type") != "chat":
            return Problem(where, "string templates are not supported by the phoenix connector",
                           "unsupported_template", "use a chat template in Phoenix", prompt=name)
        if version.get("template_format") == "F_STRING":
            return Problem(where, "f-string templates ({var}) are not supported", "unsupported_template",
                           "switch the version to mustache ({{var}}) in Phoenix", prompt=name)
        try:
            messages = [(_role(m.get("role")), _content(m.get("content"))) for m in template.get("messages") or []]
            parsed = Template.chat(*messages)
            parsed.variables()
        except (UserError, ValueError) as exc:
            return Problem(where, getattr(exc, "message", str(exc)), "bad_prompt_version",
                           getattr(exc, "hint", None), prompt=name)
        provider = str(version.get("model_provider") or "OPENAI")
        model = str(version.get("model_name"))
        if provider != "OPENAI":
            model = f"{provider.lower()}/{model}"
        invocation = version.get("invocation_parameters") or {}
        params = dict(invocation.get(invocation.get("type"), {}) or {})
        tags = [t.get("name") for t in self._pages(f"/v1/prompt_versions/{vid}/tags")]
        return PromptItem(name=name, template=parsed, model=model, params=params, external_version=vid,
                          external_id=name, labels=sorted(tags), description=description, where=where)

    def write_version(self, *, prompt: str, template: Template, model: str, params: dict[str, Any],
                      label: str, description: str | None = None) -> WriteResult:
        for value, what in ((prompt, "prompt name"), (label, "label")):
            if not IDENTIFIER.match(value):
                raise UserError(f"Phoenix refuses the {what} {value!r}", where=f"[connectors.{self.name}]",
                                hint="Phoenix identifiers are lowercase letters, digits, '_' and '-'")
        if template.kind != "chat":
            raise UserError("Phoenix prompts are chat templates; this version is plain text",
                            where=f"prompt {prompt!r}", hint="deploy text prompts through another connector")
        prefix, _, model_name = model.rpartition("/")
        provider = PROVIDERS.get(prefix or "openai")
        if provider is None:
            raise UserError(f"Phoenix has no model provider for {model!r}", where=f"prompt {prompt!r}",
                            hint=f"known prefixes: {', '.join(PROVIDERS)}")
        for item in self.read_prompts():
            if isinstance(item, PromptItem) and item.name == prompt and item.template == template \
                    and item.model == model and item.params == params:
                self.move_label(prompt=prompt, external_version=item.external_version, label=label)
                return WriteResult(prompt, item.external_version, label, created=False, external_id=prompt)
        body = {"prompt": {"name": prompt, "description": description},
                "version": {"model_provider": provider, "model_name": model_name,
                            "template": {"type": "chat", "messages": [m.model_dump() for m in template.messages or []]},
                            "template_type": "CHAT", "template_format": "MUSTACHE",
                            "invocation_parameters": {"type": provider.lower(), provider.lower(): params}}}
        created = (self.http.post("/v1/prompts", body).get("data") or {}).get("id")
        if not created:
            raise ConnectorError("Phoenix created a version but did not return its id", where=f"{self.options.url}/v1/prompts")
        self.move_label(prompt=prompt, external_version=str(created), label=label)
        return WriteResult(prompt, str(created), label, created=True, external_id=prompt,
                           where=f"{self.options.url} prompt {prompt!r} version {created}")

    def move_label(self, *, prompt: str, external_version: str, label: str) -> None:
        self.http.post(f"/v1/prompt_versions/{external_version}/tags", {"name": label})

    # -- spans -----------------------------------------------------------------------------
    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint | Looked]:
        """LLM spans of every project (or the configured one), each resumed from its own cursor."""
        state = _cursor_state(cursor, self.options.project or "default")
        projects = [str(p.get("name")) for p in self._pages("/v1/projects")]
        wanted = [self.options.project] if self.options.project else projects
        looked: list[Looked] = []
        fresh: list[str] = []  # projects that never gave a span, nor in this sync
        for project in wanted:
            if project not in projects:
                looked.append(Looked(f"project {project!r}"))
                fresh.append(project)
                continue
            read = found = 0
            for item in self._spans(project, state):
                read, found = read + isinstance(item, LogItem), found + 1
                yield item
            yield Checkpoint(json.dumps({"projects": state}, sort_keys=True))
            looked.append(Looked(f"project {project!r}", read))
            if not found and state[project]["ts"] is None:
                fresh.append(project)
        if self.options.project and fresh:
            looked[0].notice = self._empty_project(self.options.project, projects)
        elif looked and len(fresh) == len(wanted):
            looked[0].notice = Problem(
                self.options.url, f"no LLM spans in any of its {len(wanted)} projects", "no_traces",
                "trace the calls, e.g. phoenix.otel.register(project_name='my-app') and the OpenInference "
                "instrumentation of your client, sending to this Phoenix")
        yield from looked

    def _spans(self, project: str, state: dict[str, dict[str, Any]]) -> Iterator[LogItem | Problem]:
        """One project's LLM spans since its cursor (less the look-back); `state[project]` follows them."""
        mark = state.setdefault(project, {"ts": None, "ids": []})
        since = mark["ts"]
        newest, seen = since, set(mark["ids"])
        start = (datetime.fromisoformat(since) - timedelta(seconds=self.options.lookback_s)).isoformat() if since else None
        path = f"/v1/projects/{quote(project, safe='')}/spans"
        spans = list(self._pages(path, span_kind="LLM", start_time=start))
        if not all(isinstance(s, dict) for s in spans):
            raise ConnectorError("Phoenix answered spans that are not objects", where=f"{self.options.url}{path}")
        spans = [s for s in spans if _span_id(s) is None or _span_id(s) not in seen]
        annotations = self._annotations(project, [sid for s in spans if (sid := _span_id(s)) is not None])
        for span in sorted(spans, key=lambda s: str(s.get("start_time", ""))):
            item = self._log_item(span, annotations)
            yield item
            if isinstance(item, Problem):
                continue  # an unreadable span must not become the cursor
            if newest is None or span.get("start_time", "") > newest:
                newest, seen = span.get("start_time"), set()
            if span.get("start_time") == newest:
                seen.add(span["context"]["span_id"])
        state[project] = {"ts": newest, "ids": sorted(seen)}

    def _empty_project(self, project: str, projects: list[str]) -> Problem:
        """The configured project holds no LLM spans: which projects do, with counts, and the line to set."""
        where = f"{self.options.url} project {project!r}"
        what = "holds no LLM spans" if project in projects else "is not a project there"
        reason = "traces_elsewhere" if project in projects else "no_such_project"
        others = {p: n for p in projects if p != project if (n := self._count_spans(p))}
        if not others:
            return Problem(where, f"{what}, and no other project holds any", reason,
                           "trace the calls into this project, e.g. phoenix.otel.register(project_name=...) "
                           "and the OpenInference instrumentation of your client")
        found = ", ".join(f"project {p!r}: {_count(n)} LLM spans" for p, n in others.items())
        lines = " or ".join(f'project = "{p}"' for p in others)
        return Problem(where, f"{what}; they are in {found}", reason,
                       f"set {lines} under [connectors.{self.name}], or remove project to read every project")

    def _count_spans(self, project: str) -> int:
        """How many LLM spans a project holds, counted up to COUNT_CAP."""
        count, cursor = 0, None
        path = f"/v1/projects/{quote(project, safe='')}/spans"
        while count < COUNT_CAP:
            page = self.http.get(path, limit=MAX_SPANS_PAGE, cursor=cursor, span_kind="LLM")
            data = page.get("data")
            if not isinstance(data, list):
                raise ConnectorError("Phoenix answered without a 'data' list", where=f"{self.options.url}{path}")
            count += len(data)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return count

    def _log_item(self, span: dict[str, Any], annotations: dict[str, list[dict[str, Any]]]) -> LogItem | Problem:
        span_id = _span_id(span)
        where = f"{self.options.url} span {span_id}"
        if span_id is None:
            return Problem(where, "unreadable span: it has no context.span_id", "bad_span", "look at the span in Phoenix")
        try:
            attrs = span.get("attributes") or {}
            started = datetime.fromisoformat(span["start_time"])
            ended = datetime.fromisoformat(span.get("end_time") or span["start_time"])
            variables = attrs.get("llm.prompt_template.variables")
            inputs = json.loads(variables) if isinstance(variables, str) else variables
        except (KeyError, TypeError, ValueError) as exc:
            return Problem(where, f"unreadable span: {exc}", "bad_span", "look at the span in Phoenix")
        return LogItem(
            external_id=str(span_id), called_at=started, inputs=inputs if isinstance(inputs, dict) else None,
            version=None, latency_s=(ended - started).total_seconds(), **llm_fields(attrs),
            feedback=[_feedback(a) for a in annotations.get(str(span_id), [])],
            meta={"trace_id": span.get("context", {}).get("trace_id"), "status": span.get("status_code"),
                  **params_meta(attrs)},
            where=where,
        )

    def _annotations(self, project: str, span_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        path = f"/v1/projects/{quote(project, safe='')}/span_annotations"
        for chunk in range(0, len(span_ids), 50):
            for note in self._pages(path, span_ids=span_ids[chunk : chunk + 50]):
                found.setdefault(str(note.get("span_id")), []).append(note)
        return found

    def _pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.http.get(path, limit=self.options.page_size, cursor=cursor, **params)
            data = page.get("data")
            if not isinstance(data, list):
                raise ConnectorError("Phoenix answered without a 'data' list", where=f"{self.options.url}{path}")
            yield from data
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _cursor_state(cursor: str | None, before: str) -> dict[str, dict[str, Any]]:
    """project name → {"ts", "ids"}. A cursor saved before cursors were per project is one
    {"ts", "ids"} over the project read then (`before`: the configured one, else "default")."""
    if not cursor:
        return {}
    state = json.loads(cursor)
    if "projects" in state:
        return {str(k): {"ts": v["ts"], "ids": list(v["ids"])} for k, v in state["projects"].items()}
    return {before: {"ts": state["ts"], "ids": list(state["ids"])}}


def _count(n: int) -> str:
    return f"{n}+" if n >= COUNT_CAP else str(n)


def _span_id(span: dict[str, Any]) -> str | None:
    context = span.get("context")
    span_id = context.get("span_id") if isinstance(context, dict) else None
    return str(span_id) if span_id is not None else None


def _role(role: Any) -> str:
    mapped = {"ai": "assistant", "model": "assistant", "developer": "system"}.get(role, role)
    if mapped not in ROLES:
        raise ValueError(f"message role {role!r} is not supported (only system, user, assistant)")
    return str(mapped)


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(p.get("text", "") for p in content)
    raise ValueError("message content has tool calls or non-text parts")


def _feedback(note: dict[str, Any]) -> dict[str, Any]:
    result = note.get("result") or {}
    value = result.get("score") if result.get("score") is not None else result.get("label")
    return {"name": note.get("name"), "value": value,
            "source": note.get("user_id") or str(note.get("annotator_kind", "unknown")).lower()}
