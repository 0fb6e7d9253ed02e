"""The langfuse connector: Langfuse's public API — v2 prompts (text and chat, labels), v2
observations (generations with usage, cost, linked prompt) and v2 scores (feedback on those
generations or their traces) — with Basic auth from the environment.

Contract-tested, not tested against a live server: a Langfuse server cannot run here, so the tests
validate every request and response against Langfuse's OpenAPI spec with a local stub server.
Model and params live in the prompt's `config` (`{"model": ..., "temperature": ...}`), the
convention of Langfuse's SDKs. The `latest` label is Langfuse's own and is left to it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from trimloop.connectors.base import Checkpoint, Connector, LogItem, Looked, Problem, PromptItem, WriteResult
from trimloop.connectors.http import JsonClient, secret_from_env
from trimloop.core.egress import Egress
from trimloop.core.errors import ConnectorError, UserError
from trimloop.core.templates import ROLES, Template
from trimloop.core.usage import usage_from_details

MANAGED_LABEL = "latest"
FIELDS = "core,basic,time,io,model,usage,prompt"
SCORES = "/api/public/v2/scores"
# feedback by ("observation", id) or ("trace", id): (timestamp, score id, entry), sorted when attached
Feedback = dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]]


class LangfuseConnector(Connector):
    """Prompts with labels and generation observations from one Langfuse project."""

    type = "langfuse"

    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        url: str = Field(description="e.g. https://cloud.langfuse.com")
        public_key_env: str = "LANGFUSE_PUBLIC_KEY"
        secret_key_env: str = "LANGFUSE_SECRET_KEY"
        default_model: str | None = None
        lookback_s: float = Field(default=300.0, ge=0)
        timeout_s: float = 30.0
        page_size: int = Field(default=50, ge=1, le=1000)

    def __init__(self, *, name: str, options: dict[str, Any] | None = None,
                 transport: httpx.BaseTransport | None = None, egress: Egress | None = None) -> None:
        super().__init__(name=name, options=options, egress=egress)
        public = secret_from_env(self.options.public_key_env, connector=name, option="public_key_env")
        secret = secret_from_env(self.options.secret_key_env, connector=name, option="secret_key_env")
        self.http = JsonClient(base_url=self.options.url, service="Langfuse", connector=name, egress=self.egress,
                               timeout_s=self.options.timeout_s, transport=transport,
                               auth=httpx.BasicAuth(public or "", secret or ""), secrets=(secret,))

    def close(self) -> None:
        self.http.close()

    # -- prompts ---------------------------------------------------------------------------
    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        page = 1
        while True:
            body = self.http.get("/api/public/v2/prompts", page=page, limit=self.options.page_size)
            metas, meta = body.get("data"), body.get("meta") or {}
            if not isinstance(metas, list):
                raise ConnectorError("Langfuse answered without a 'data' list", where=f"{self.options.url}/api/public/v2/prompts")
            for prompt in metas:
                for version in prompt.get("versions") or []:
                    if isinstance(version, int) and not isinstance(version, bool):
                        yield self._prompt_item(str(prompt.get("name")), version)
                    else:
                        yield Problem(f"{self.options.url} prompt {prompt.get('name')!r} version {version!r}",
                                      "version is not a number", "bad_prompt_version",
                                      "look at the prompt in Langfuse", prompt=str(prompt.get("name")))
            if page >= int(meta.get("totalPages") or 1):
                return
            page += 1

    def _prompt_item(self, name: str, version: int) -> PromptItem | Problem:
        where = f"{self.options.url} prompt {name!r} version {version}"
        data = self.http.get(f"/api/public/v2/prompts/{quote(name, safe='')}", version=version)
        try:
            template = _template(data)
            template.variables()
            config = dict(data.get("config") or {})
            model = config.pop("model", None) or self.options.default_model
            if not model:
                raise UserError("version has no model", hint="put \"model\" in the prompt's config in Langfuse "
                                "or set default_model in the connector's options")
        except (UserError, ValueError, TypeError, AttributeError) as exc:
            return Problem(where, getattr(exc, "message", str(exc)), "bad_prompt_version",
                           getattr(exc, "hint", None), prompt=name)
        labels = sorted(label for label in data.get("labels") or [] if label != MANAGED_LABEL)
        return PromptItem(name=name, template=template, model=str(model), params=config,
                          external_version=str(version), external_id=name, labels=labels, where=where)

    def write_version(self, *, prompt: str, template: Template, model: str, params: dict[str, Any],
                      label: str, description: str | None = None) -> WriteResult:
        if label == MANAGED_LABEL:
            raise UserError("'latest' is managed by Langfuse", hint="deploy under staging or production")
        for item in self.read_prompts():
            if isinstance(item, PromptItem) and item.name == prompt and item.template == template \
                    and item.model == model and item.params == params:
                self.move_label(prompt=prompt, external_version=item.external_version, label=label)
                return WriteResult(prompt, item.external_version, label, created=False, external_id=prompt)
        body: dict[str, Any] = {"type": template.kind, "name": prompt, "config": {"model": model, **params},
                                "labels": [label], "commitMessage": description or "deployed by trimloop"}
        body["prompt"] = template.text if template.kind == "text" else [
            {"type": "chatmessage", "role": m.role, "content": m.content} for m in template.messages or []]
        created = self.http.post("/api/public/v2/prompts", body)
        if not isinstance(created.get("version"), int):
            raise ConnectorError("Langfuse created a version but did not say its number",
                                 where=f"{self.options.url}/api/public/v2/prompts")
        return WriteResult(prompt, str(created["version"]), label, created=True, external_id=prompt,
                           where=f"{self.options.url} prompt {prompt!r} version {created['version']}")

    def move_label(self, *, prompt: str, external_version: str, label: str) -> None:
        path = f"/api/public/v2/prompts/{quote(prompt, safe='')}"
        current = self.http.get(path, version=int(external_version)).get("labels") or []
        labels = sorted({*current, label} - {MANAGED_LABEL})
        self.http.request("PATCH", f"{path}/versions/{int(external_version)}", json={"newLabels": labels})

    # -- observations ----------------------------------------------------------------------
    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint | Looked]:
        """Generations of every environment of the keys' project; then where it looked."""
        state = json.loads(cursor) if cursor else {"ts": None, "ids": []}
        newest, seen = state["ts"], set(state["ids"])
        params: dict[str, Any] = {"type": "GENERATION", "fields": FIELDS, "parseIoAsJson": "true",
                                  "limit": self.options.page_size}
        if newest:
            start = datetime.fromisoformat(newest.replace("Z", "+00:00")) - timedelta(seconds=self.options.lookback_s)
            params["fromStartTime"] = start.isoformat().replace("+00:00", "Z")
        items: list[dict[str, Any]] = []
        while True:
            page = self.http.get("/api/public/v2/observations", **params)
            data = page.get("data")
            if not isinstance(data, list):
                raise ConnectorError("Langfuse answered without a 'data' list",
                                     where=f"{self.options.url}/api/public/v2/observations")
            items.extend(o for o in data if isinstance(o, dict) and o.get("id") not in seen)
            next_cursor = (page.get("meta") or {}).get("cursor")
            if not next_cursor:
                break
            params["cursor"] = next_cursor
        feedback, problems = self._scores(items)
        yield from problems
        first, environments = state["ts"] is None, Counter[str]()
        for obs in sorted(items, key=lambda o: str(o.get("startTime"))):
            item = self._log_item(obs, feedback)
            yield item
            if isinstance(item, LogItem):
                environments[str(obs.get("environment") or "default")] += 1
            if isinstance(item, Problem):
                continue  # an unreadable start time must not become the cursor
            start_time = str(obs.get("startTime"))
            if newest is None or start_time > newest:
                newest, seen = start_time, set()
            if start_time == newest:
                seen.add(str(obs.get("id")))
        yield Checkpoint(json.dumps({"ts": newest, "ids": sorted(seen)}))
        per = ", ".join(f"{env} {n}" for env, n in sorted(environments.items()))
        looked = Looked(f"the project of the keys in {self.options.public_key_env}, every environment"
                        + (f" ({per})" if per else ""), sum(environments.values()))
        if first and not items:
            looked.notice = Problem(
                f"{self.options.url} (keys from {self.options.public_key_env})",
                "the project of these keys holds no generations", "no_traces",
                "Langfuse keys belong to one project: use the keys of the project your app traces into "
                "(Settings → API keys); trimloop reads GENERATION observations")
        yield looked

    def _log_item(self, obs: dict[str, Any], feedback: Feedback) -> LogItem | Problem:
        where = f"{self.options.url} observation {obs.get('id')}"
        scores = sorted(feedback.get(("observation", str(obs.get("id"))), [])
                        + feedback.get(("trace", str(obs.get("traceId"))), []), key=lambda s: s[:2])
        try:
            started = datetime.fromisoformat(str(obs["startTime"]).replace("Z", "+00:00"))
            ended = datetime.fromisoformat(str(obs.get("endTime") or obs["startTime"]).replace("Z", "+00:00"))
            usage = obs.get("usageDetails") or {}
            version = obs.get("promptVersion")
            return LogItem(
                external_id=str(obs["id"]), called_at=started, prompt=obs.get("promptName"),
                version=str(version) if version is not None else None, rendered=_messages(obs.get("input")),
                output=_output(obs.get("output")), model=obs.get("providedModelName"), cost=obs.get("totalCost"),
                latency_s=(ended - started).total_seconds(), feedback=[entry for _, _, entry in scores], where=where,
                meta={"trace_id": obs.get("traceId"), "params": obs.get("modelParameters") or {}},
            ).set_usage(usage_from_details(usage))
        except (KeyError, TypeError, ValueError) as exc:
            return Problem(where, f"unreadable observation: {exc}", "bad_observation", "look at it in Langfuse")

    # -- scores ----------------------------------------------------------------------------
    def _scores(self, observations: list[dict[str, Any]]) -> tuple[Feedback, list[Problem]]:
        """Scores on these observations (by observation id) or on their traces (no observation id):
        one paged read of `GET /api/public/v2/scores` from the earliest observation's start time
        (less `lookback_s`, for clock skew). Bad scores on these calls become Problems."""
        starts = []
        for obs in observations:
            try:
                starts.append(datetime.fromisoformat(str(obs["startTime"]).replace("Z", "+00:00")))
            except (KeyError, TypeError, ValueError):
                pass  # reported as a bad observation
        if not starts:
            return {}, []
        obs_ids = {str(o.get("id")) for o in observations}
        trace_ids = {str(o["traceId"]) for o in observations if isinstance(o.get("traceId"), str)}
        since = min(starts) - timedelta(seconds=self.options.lookback_s)
        params: dict[str, Any] = {"fields": "score", "limit": self.options.page_size, "page": 1,
                                  "fromTimestamp": since.isoformat().replace("+00:00", "Z")}
        found: Feedback = {}
        problems: list[Problem] = []
        done: set[str] = set()
        while True:
            body = self.http.get(SCORES, **params)
            data, meta = body.get("data"), body.get("meta")
            if not isinstance(data, list) or not isinstance(meta, dict):
                raise ConnectorError("Langfuse answered without a 'data' list and 'meta'",
                                     where=f"{self.options.url}{SCORES}")
            for index, score in enumerate(data):
                if not isinstance(score, dict):
                    problems.append(Problem(f"{self.options.url}{SCORES} page {params['page']} item {index}",
                                            f"a score that is not an object: {score!r:.80}", "bad_score",
                                            "the calls are kept without it"))
                    continue
                obs_id, trace_id = score.get("observationId"), score.get("traceId")
                if obs_id is not None:  # an observation's score belongs to that observation only
                    target = ("observation", str(obs_id)) if str(obs_id) in obs_ids else None
                else:  # a trace's score belongs to every generation of the trace
                    target = ("trace", trace_id) if isinstance(trace_id, str) and trace_id in trace_ids else None
                if target is None or str(score.get("id")) in done:
                    continue  # another call's score, a session score, or one already read on an earlier page
                done.add(str(score.get("id")))
                try:
                    entry = _feedback(score)
                except ValueError as exc:
                    problems.append(Problem(f"{self.options.url}{SCORES} score {score.get('id')}",
                                            f"unreadable score: {exc}", "bad_score",
                                            "look at the score in Langfuse; the call is kept without it"))
                    continue
                found.setdefault(target, []).append((str(score.get("timestamp")), str(score.get("id")), entry))
            try:
                total_pages = int(meta.get("totalPages") or 1)
            except (TypeError, ValueError):
                raise ConnectorError(f"Langfuse answered a page count that is not a number: {meta.get('totalPages')!r}",
                                     where=f"{self.options.url}{SCORES}") from None
            if params["page"] >= total_pages:
                return found, problems
            params["page"] += 1


def _feedback(score: dict[str, Any]) -> dict[str, Any]:
    """A Langfuse score as a feedback entry: NUMERIC → number, BOOLEAN → bool, CATEGORICAL (and
    CORRECTION, a corrected output) → its string; the source (API, ANNOTATION, EVAL) lowercased."""
    name, source, kind = score.get("name"), score.get("source"), score.get("dataType")
    value, text = score.get("value"), score.get("stringValue")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name {name!r} is not a non-empty string")
    if not isinstance(source, str) or not source:
        raise ValueError(f"source {source!r} is not a non-empty string")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "NUMERIC":
        if not numeric:
            raise ValueError(f"NUMERIC score with value {value!r}, not a number")
        result: Any = value
    elif kind == "BOOLEAN":
        if not numeric or value not in (0, 1):
            raise ValueError(f"BOOLEAN score with value {value!r}, not 0 or 1")
        result = value == 1
    elif kind in ("CATEGORICAL", "CORRECTION"):
        if not isinstance(text, str):
            raise ValueError(f"{kind} score with stringValue {text!r}, not a string")
        result = text
    else:
        raise ValueError(f"dataType {kind!r} is not NUMERIC, BOOLEAN, CATEGORICAL or CORRECTION")
    return {"name": name, "value": result, "source": source.lower()}


def _template(data: dict[str, Any]) -> Template:
    if data.get("type") == "text":
        return Template.plain(str(data["prompt"]))
    messages = []
    for message in data.get("prompt") or []:
        if message.get("type") == "placeholder":
            raise ValueError(f"message placeholder {message.get('name')!r} is not supported")
        if message.get("role") not in ROLES:
            raise ValueError(f"message role {message.get('role')!r} is not supported")
        messages.append((message["role"], message["content"]))
    return Template.chat(*messages)


def _messages(value: Any) -> list[dict[str, Any]] | str | None:
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return [{"role": m.get("role"), "content": m.get("content")} for m in value]
    return value if isinstance(value, str) else None


def _output(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content") if isinstance(value.get("content"), str) else json.dumps(value)
    return value if isinstance(value, str) or value is None else json.dumps(value)
